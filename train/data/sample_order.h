// The order in which a loader visits windows: a seeded permutation per epoch
// that is the same on every platform, compiler and standard library (no
// std::*_distribution), so any rank, a resumed run or a reference
// implementation in another language reproduces it (algorithm in docs/data.md).
#pragma once

#include <cstdint>
#include <vector>

namespace loom::data {

/// Vigna's splitmix64 generator: state += 0x9E3779B97F4A7C15, then the
/// multiply-xorshift finaliser of the new state.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}

  uint64_t next();

  /// Uniform in [0, bound) without modulo bias: rejects draws below
  /// 2^64 mod bound, then reduces modulo bound. REQUIRES: bound >= 1.
  uint64_t below(uint64_t bound);

 private:
  uint64_t state_;
};

/// The generator state that starts the shuffle of `epoch` under `seed`:
/// SplitMix64(seed ^ SplitMix64(epoch).next()).next().
uint64_t epochStreamState(uint64_t seed, int64_t epoch);

/// P_{seed,epoch}: a permutation of [0, n) by Fisher-Yates (for i = n-1 down
/// to 1: swap(p[i], p[below(i + 1)])) driven by SplitMix64(epochStreamState).
/// REQUIRES: n >= 1, epoch >= 0.
std::vector<int64_t> epochPermutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace loom::data
