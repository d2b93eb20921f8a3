#include "runtime/dist/store_barrier.h"

#include "runtime/core/error.h"

#include <algorithm>
#include <sstream>
#include <thread>

namespace loom::dist {
namespace {

std::string keyOf(const std::string& name, int rank) {
  return name + "/" + std::to_string(rank);
}

}  // namespace

std::vector<int> missingRanks(c10d::Store& store, const std::string& name, int size) {
  std::vector<int> missing;
  for (int r = 0; r < size; ++r) {
    if (!store.check({keyOf(name, r)})) missing.push_back(r);
  }
  return missing;
}

void storeBarrier(c10d::Store& store, const std::string& name, int rank, int size, std::chrono::milliseconds timeout,
                  const std::string& where) {
  store.set(keyOf(name, rank), std::vector<uint8_t>{'1'});
  std::vector<std::string> keys;
  keys.reserve(size);
  for (int r = 0; r < size; ++r) keys.push_back(keyOf(name, r));
  // Polls with check() rather than Store::wait(keys, timeout): after a timed
  // out wait, c10d's server still answers it later on the same connection,
  // where the next request (of any thread sharing the client) would read that
  // answer as its own.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  try {
    while (!store.check(keys)) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(20));
    }
  } catch (const std::exception& lost) {
    LOOM_THROW(PeerLostError, where, ": rank ", rank, " of ", size,
               " lost the store while waiting for the others: ", errorMessage(lost));
  }
  const std::vector<int> missing = missingRanks(store, name, size);
  if (missing.empty()) return;
  std::ostringstream ranks;
  for (size_t i = 0; i < missing.size(); ++i) ranks << (i ? ", " : "") << missing[i];
  LOOM_THROW(PeerLostError, where, ": ranks ", ranks.str(), " did not arrive within ", timeout.count(), " ms (",
             size - static_cast<int>(missing.size()), " of ", size, " arrived; seen from rank ", rank,
             "). Check that every rank was started with the same world size (", size,
             ") and store endpoint, and read the missing ranks' logs.");
}

}  // namespace loom::dist
