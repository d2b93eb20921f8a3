#include "optim/outer/pairing.h"

#include "runtime/core/error.h"

#include <algorithm>
#include <numeric>
#include <utility>

namespace loom::optim::outer {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniform in [0, bound) without modulo bias (rejection sampling).
uint64_t below(uint64_t& state, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x = splitmix64(state);
  while (x >= limit) x = splitmix64(state);
  return x % bound;
}

}  // namespace

std::vector<int> replicaPermutation(uint64_t seed, int64_t step, int replicas) {
  std::vector<int> perm(static_cast<size_t>(replicas));
  std::iota(perm.begin(), perm.end(), 0);
  uint64_t state = seed * 0xD1B54A32D192ED03ULL ^ static_cast<uint64_t>(step);
  splitmix64(state);
  for (int i = replicas - 1; i > 0; --i) {
    const auto j = static_cast<int>(below(state, static_cast<uint64_t>(i) + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

std::vector<std::vector<int>> replicaGroups(uint64_t seed, int64_t step, int replicas, int group_size) {
  LOOM_CHECK_INPUT(group_size >= 1, "outer.group_size (", group_size, ") must be >= 1");
  const std::vector<int> perm = replicaPermutation(seed, step, replicas);
  const int count = std::max(1, replicas / group_size);
  std::vector<std::vector<int>> groups(static_cast<size_t>(count));
  for (int i = 0; i < replicas; ++i) groups[static_cast<size_t>(i % count)].push_back(perm[static_cast<size_t>(i)]);
  for (auto& g : groups) std::sort(g.begin(), g.end());
  return groups;
}

std::vector<int> groupOf(uint64_t seed, int64_t step, int replicas, int group_size, int replica) {
  for (auto& g : replicaGroups(seed, step, replicas, group_size)) {
    if (std::find(g.begin(), g.end(), replica) != g.end()) return g;
  }
  LOOM_THROW(c10::Error, "replica ", replica, " is outside [0, ", replicas, ")");
}

}  // namespace loom::optim::outer
