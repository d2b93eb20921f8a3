// The static dp x cp mesh: the baseline HDP replaces (parallel_elastic.md §1.4;
// docs/hdp.md "Static baseline"). Every sequence runs on a context-parallel
// group of `cp` ranks, whatever its length: the pool is cut into dp = pool / cp
// aligned groups, sequences are packed (longest first, first fit) into rows of
// at most cp * capacity tokens, and each row goes to the group with the least
// summed cost so far, cost(row) = sum over its sequences of L * L / cp (the
// attention of packed documents is computed document by document). Each group
// runs its rows one after the other, every rank holding its zigzag share of
// the row. Deterministic, like planHdp.
#pragma once

#include <cstdint>
#include <vector>

namespace loom::parallel {

struct StaticRow {
  std::vector<int64_t> sequences;  ///< indices into the lengths, in row order
  int first_rank = 0;              ///< the group [first_rank, first_rank + cp)
  int64_t tokens = 0;
};

struct StaticPlan {
  int pool = 0;
  int cp = 1;
  std::vector<StaticRow> rows;
  int64_t global_tokens = 0;
  std::vector<double> rank_cost;  ///< per rank: summed cost over the step
  double imbalance() const;       ///< max / mean of rank_cost
};

/// The cp a static mesh needs for `longest` tokens: the smallest power of two
/// >= ceil(longest / capacity) (as hdpGroupSize).
int staticCp(int64_t longest, int64_t capacity);

/// Throws InputError when cp is not a power of two dividing pool, capacity
/// <= 0, a length < 1 or a sequence longer than cp * capacity.
StaticPlan planStatic(const std::vector<int64_t>& lengths, int pool, int cp, int64_t capacity);

}  // namespace loom::parallel
