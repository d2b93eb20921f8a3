// The timing loop of the kernel benchmarks: `warmup` untimed calls, then the
// median wall-clock time of `reps` timed calls, in microseconds.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace loom::bench {

inline double medianMicros(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) {
    fn();
  }
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const auto stop = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

}  // namespace loom::bench
