#include "train/data/sample_order.h"

#include "runtime/core/error.h"

#include <numeric>
#include <utility>

namespace loom::data {

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t bound) {
  LOOM_CHECK(bound >= 1, "SplitMix64::below needs bound >= 1");
  const uint64_t threshold = (0 - bound) % bound;  // = 2^64 mod bound
  while (true) {
    const uint64_t r = next();
    if (r >= threshold) return r % bound;
  }
}

uint64_t epochStreamState(uint64_t seed, int64_t epoch) {
  const uint64_t epoch_key = SplitMix64(static_cast<uint64_t>(epoch)).next();
  return SplitMix64(seed ^ epoch_key).next();
}

std::vector<int64_t> epochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  LOOM_CHECK(n >= 1 && epoch >= 0, "epochPermutation(n=", n, ", epoch=", epoch, ")");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  SplitMix64 rng(epochStreamState(seed, epoch));
  for (int64_t i = n - 1; i >= 1; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

}  // namespace loom::data
