// NoLoCo's groups: which replicas average together at an outer step, computed
// by every replica from (seed, step) alone, so choosing them costs no message
// (../shared/reference/optimizers.md §3.3). A permutation of the k replicas is
// drawn with a counter-based generator (splitmix64 + Fisher-Yates, the same
// bits on every platform) and dealt into G = max(1, k / n) groups: perm[i]
// goes to group i % G. When n divides k every group has n members; after
// failures leave k replicas that n does not divide, the remainder is spread
// over the groups (sizes differ by at most one, each between n and 2n - 1),
// and below n replicas all of them form one group.
#pragma once

#include <cstdint>
#include <vector>

namespace loom::optim::outer {

/// The permutation of [0, replicas) for outer step `step`.
std::vector<int> replicaPermutation(uint64_t seed, int64_t step, int replicas);

/// The groups of outer step `step`, each sorted ascending. Throws InputError
/// when group_size < 1.
std::vector<std::vector<int>> replicaGroups(uint64_t seed, int64_t step, int replicas, int group_size);

/// The group holding `replica`.
std::vector<int> groupOf(uint64_t seed, int64_t step, int replicas, int group_size, int replica);

}  // namespace loom::optim::outer
