// The HDP planner (hybrid data + context parallelism on a dynamic mesh, ByteScale
// / Megatron "hybrid CP"). Every rank of the data x context pool runs it on the
// all-gathered sequence lengths of a step and gets the same plan: pure arithmetic,
// no communication, no randomness, no unordered containers, and costs computed
// with an explicit fma so even another IEEE-754 platform or compiler agrees
// bit for bit. Ranks check agreement by all-gathering HdpPlan::hash().
//
// Model. The pool has P ranks; a rank holds at most C tokens at a time (a
// "wave"). Sequence i of length L_i runs on c_i ranks, the smallest power of
// two >= ceil(L_i / C): c_i = 1 for a short sequence (plain data parallel; a
// rank packs several of them in one wave, up to C tokens), c_i >= 2 for a long
// one (a context-parallel group; each member holds ceil(L_i / c_i) <= C tokens).
// A group is an aligned block of ranks [k*c, (k+1)*c) inside the pool, so one
// pre-split communicator per aligned power-of-two block (log2(P)+1 levels)
// serves every plan and no step creates a communicator. With P not a power of
// two the blocks still lie inside [0, P); the largest group is the largest
// power of two <= P. Estimated cost of sequence i on each of its ranks:
//   cost(L, c) = (L*L * quadratic_weight + L * linear_weight) / c
// (attention is quadratic, everything else linear; both split evenly over a
// zigzag CP group).
//
// Algorithm (two passes over the sequences sorted by length descending, ties by
// index; so the largest groups come first, and within a size the longest):
//  1. Assign (step-level LPT). A group goes to the aligned block of its size
//     whose most-loaded rank has the least summed cost so far (ties: lowest
//     block); a short sequence to the least-loaded rank (ties: lowest rank).
//     Loads are summed over the whole step, not per wave: gradients are
//     reduced once per step, so ranks may run different numbers of waves.
//  2. Waves (first fit). In the same order, each placement goes into the
//     earliest wave where it fits: a group needs all its ranks free in that
//     wave, a short sequence needs its rank not in a group there and room for
//     its tokens (so short ones pack first-fit decreasing). A rank in a group
//     in a wave does nothing else in that wave.
// Unlike Megatron's next_hdp_group, waves are not balanced one by one (no
// delta stopping rule, trimming or group doubling): only the step's per-rank
// sums matter once a rank runs its waves back to back. A move/swap refinement
// after pass 1 was tried and changed no plan of the tested mixes, so it is not
// here. Cost: O(n log n + n * P) for pass 1 and O(n * waves * c) for pass 2.
//
// Guarantees (tested in tests/parallel/hdp_plan_test.cpp):
//  - every sequence is placed exactly once; tokens per rank per wave <= C;
//    groups are aligned powers of two within the pool and disjoint in a wave;
//  - first fit: no placement would fit in an earlier wave of the final plan.
//    So a rank that is idle in a wave gets no short sequence in a later wave,
//    and a group lands after a wave only if one of its ranks is busy there;
//  - no idle block while others double up: if an aligned block of c ranks has
//    no work in the whole step, every rank holding a sequence of group size
//    <= c holds nothing else. (With fewer sequences than ranks, some ranks
//    simply stay empty: rank_cost 0 and absent from every wave);
//  - no waiting: on every rank the waves where it is in a group come before all
//    others, and a group's members have run identical work before it (groups
//    are placed largest first, aligned, so an earlier group on one member
//    covered all of them). Running waves back to back, no group waits for a
//    member and the step takes max(rank_cost) under the cost model;
//  - permuting the input permutes only the sequence indices: placement k of
//    wave w has the same length, first rank and size.
// Worked example (P = 4, C = 4096, cost L*L/c; the test TheDocumentedWorkedExample):
// lengths {1000, 5000, 16384, 3000, 6000, 1000, 4000} give
//   wave 0: seq 2 on ranks 0-3
//   wave 1: seq 4 on ranks 0-1, seq 1 on ranks 2-3
//   wave 2: seq 6 on rank 2, seq 3 on rank 3, seq 0 on rank 0, seq 5 on rank 1
// and rank costs 86.1M, 86.1M, 95.6M, 88.6M (imbalance 1.073, yet optimal: the
// 4000-token sequence adds 16M to whichever rank takes it).
// Execution contract: every rank runs the waves in order (a rank skips the
// waves it is absent from); a group's members exchange data only with each
// other, so no barrier between waves is needed to avoid deadlock.
#pragma once

#include <cstdint>
#include <vector>

namespace loom::parallel {

struct HdpOptions {
  int pool = 1;                   ///< P: ranks in the data x context pool; >= 1
  int64_t capacity = 0;           ///< C: tokens one rank holds in a wave; > 0
  double quadratic_weight = 1.0;  ///< cost per token pair (attention); >= 0
  /// Cost per token (matmuls, norms, ...); >= 0. The default, 0, is Megatron's
  /// L*L/c. For a dense causal transformer of hidden size h the FLOP ratio gives
  /// linear_weight = 12 * h with quadratic_weight = 1.
  double linear_weight = 0.0;
};

/// Sequence `sequence` (an index into the lengths given to planHdp) runs on
/// ranks [first_rank, first_rank + ranks): one rank for a short sequence, a
/// context-parallel group of `ranks` (a power of two, first_rank % ranks == 0)
/// for a long one.
struct Placement {
  int64_t sequence = 0;
  int first_rank = 0;
  int ranks = 1;
};

/// One wave: placements with disjoint rank ranges, except that several short
/// sequences (ranks == 1) may share a rank, up to `capacity` tokens together.
/// A rank absent from a wave is idle in it.
struct Wave {
  std::vector<Placement> placements;
};

struct HdpPlan {
  int pool = 0;
  int64_t capacity = 0;  ///< C the plan was made for
  std::vector<Wave> waves;
  int64_t global_tokens = 0;      ///< sum of all lengths: the step's gradient divisor
  std::vector<double> rank_cost;  ///< per rank: summed cost over the step (0: no work)

  /// max / mean of rank_cost; 1 for a plan without sequences.
  double imbalance() const;
  /// FNV-1a over the pool size, global_tokens and every placement in order (the
  /// costs derive from these and are left out). Equal plans, equal hashes.
  uint64_t hash() const;
};

/// Plans one step: `lengths[i]` is sequence i's token count.
/// Throws InputError when pool < 1, capacity <= 0, a weight is negative or not
/// finite, both weights are 0, a length is < 1, or a sequence
/// needs more ranks than the largest aligned block of the pool (length > P' * C,
/// P' the largest power of two <= pool).
HdpPlan planHdp(const std::vector<int64_t>& lengths, const HdpOptions& opts);

/// The group size planHdp gives a sequence of `length` tokens: the smallest
/// power of two >= ceil(length / capacity). REQUIRES: length >= 1, capacity >= 1.
int64_t hdpGroupSize(int64_t length, int64_t capacity);

}  // namespace loom::parallel
