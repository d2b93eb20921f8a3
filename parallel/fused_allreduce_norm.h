// The end of a tensor-parallel sublayer: the sum over the group of the ranks'
// partial outputs, plus the residual, then the next RMSNorm (issue 7;
// parallel_elastic.md §3.5, TokenWeave's fused_allreduce_layernorm):
//   a = sum_k x_k,  residual_out = a + residual_in,
//   out = residual_out * rsqrt(mean(residual_out^2) + eps) * weight
// over any communicator, in two ways:
//   kAllReduce      all-reduce x, then the fused add+RMSNorm kernel on every
//                   token on every rank; the residual is full on every rank.
//   kReduceScatter  the portable decomposition: reduce-scatter x over tokens
//                   (padded to a multiple of the group size), add+RMSNorm on
//                   this rank's token shard only (1/ws of the work), all-gather
//                   the normalised shards. The residual stays token-sharded:
//                   each rank keeps and updates only its shard (tokenShard()),
//                   and `out` is the same bytes on every rank.
// Sums, the residual add and the norm run in float32 whatever the dtype
// (float32 or bfloat16); outputs are rounded to x's dtype once at the end.
// CUDA tensors (on an NcclCommunicator) take the same steps; where libtorch has
// CUDA, the add+norm step is one kernel that writes the rounded outputs
// (kernels/cuda/fused_add_rms_norm.cuh). The raw-pointer launchers over an
// ncclComm_t, and the symmetric-memory path, are in parallel/cuda/.
#pragma once

#include "parallel/token_shard.h"
#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>

namespace loom::parallel {

enum class FusedNormPath { kAllReduce, kReduceScatter };

struct FusedNormOutput {
  at::Tensor out;       ///< [tokens, hidden], x's dtype
  at::Tensor residual;  ///< residual_out: full (kAllReduce) or this rank's shard (kReduceScatter)
};

/// x: [tokens, hidden] this rank's partial sums; weight: [hidden]; residual:
/// [tokens, hidden] for kAllReduce, this rank's tokenShard() for
/// kReduceScatter. Collective over `group`. Throws InputError for shapes or
/// dtypes that do not fit.
FusedNormOutput fusedAllReduceAddRmsNorm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                         double eps, dist::Communicator& group, FusedNormPath path);

/// Rows [rank * s, (rank + 1) * s) of `full` [tokens, hidden] zero-padded to
/// ranks * s rows, s = ceil(tokens / ranks): the residual shard rank `rank`
/// keeps in the reduce-scatter path.
at::Tensor tokenShard(const at::Tensor& full, int ranks, int rank);

/// This rank's token shard [shardRows(tokens, ranks), hidden] of the sum over
/// `group` of every rank's `full` [tokens, hidden] (zero-padded to a multiple of
/// the group size): a reduce-scatter, waited for. A new tensor (on a group of
/// one, a copy of `full`).
at::Tensor reduceScatterRows(dist::Communicator& group, const at::Tensor& full);

/// [tokens, hidden] from every rank's [shardRows(tokens, ranks), hidden] shard,
/// the padding dropped: an all-gather, waited for. A new tensor.
at::Tensor gatherRows(dist::Communicator& group, const at::Tensor& shard, int64_t tokens);

}  // namespace loom::parallel
