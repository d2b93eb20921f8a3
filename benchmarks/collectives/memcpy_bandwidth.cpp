#include "benchmarks/collectives/memcpy_bandwidth.h"

#include "runtime/core/error.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace loom::bench {
namespace {

void copyOnce(const char* source, char* target, size_t bytes, int threads) {
  if (threads == 1) {
    std::memcpy(target, source, bytes);
    return;
  }
  const size_t slice = (bytes + threads - 1) / threads;
  std::vector<std::thread> workers;
  for (size_t begin = 0; begin < bytes; begin += slice) {
    const size_t length = std::min(slice, bytes - begin);
    workers.emplace_back([=] { std::memcpy(target + begin, source + begin, length); });
  }
  for (std::thread& worker : workers) {
    worker.join();
  }
}

}  // namespace

CopyBandwidth measureMemcpy(int64_t bytes, int threads, int reps) {
  LOOM_CHECK(bytes >= 1 && threads >= 1 && reps >= 1, "measureMemcpy(", bytes, ", ", threads, ", ", reps, ")");
  const auto size = static_cast<size_t>(bytes);
  std::vector<char> source(size, 1);
  std::vector<char> target(size);
  copyOnce(source.data(), target.data(), size, threads);
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    copyOnce(source.data(), target.data(), size, threads);
    times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  // Reading the copy back keeps the compiler from dropping copies into a buffer nobody reads.
  LOOM_CHECK(target.front() == 1 && target.back() == 1, "memcpy left the target unchanged");
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  CopyBandwidth result;
  result.time_us = times[times.size() / 2];
  result.gb_per_s = static_cast<double>(bytes) / (result.time_us * 1e-6) / 1e9;
  return result;
}

}  // namespace loom::bench
