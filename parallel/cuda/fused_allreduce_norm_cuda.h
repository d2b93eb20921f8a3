// The fused all-reduce + residual add + RMSNorm of parallel/fused_allreduce_norm.h
// on CUDA, over a raw NCCL communicator and a stream (issue 7; parallel_elastic.md
// §3.5, §3.7):
//   a = sum_k x_k,  residual_out = a + residual,  out = rmsnorm(residual_out) * weight
// Same semantics as the CPU function: the sum, the add and the norm run in
// float32 (bfloat16 partials are widened and reduced in float32 by NCCL, so no
// rounding happens before the end); residual_out and out are rounded to the
// dtype once.
//
//   allReduceAddRmsNorm      ncclAllReduce (float32), then the fused kernel on
//                            every token; the residual is full on every rank.
//   reduceScatterAddRmsNorm  ncclReduceScatter over tokens padded to a multiple of
//                            the rank count, the fused kernel on this rank's
//                            shard (1/ws of the work; the residual stays
//                            token-sharded, see shardRows), ncclAllGather of the
//                            normalised shards, rounded before the gather so
//                            `out` is the same bytes on every rank.
// symmetric_norm.h adds the Hopper path on NCCL symmetric memory.
//
// Launchers enqueue NCCL calls and kernels on `stream` and return without
// synchronising; every rank of `comm` must make the same call with the same
// tokens/hidden/dtype. A non-blocking communicator is polled after each NCCL call
// until the call is enqueued (ncclCommGetAsyncError), for up to 60 s (settleNccl);
// the launched work itself is not waited for. loom's NcclCommunicator, which bounds
// every operation by its timeout, goes through parallel/fused_allreduce_norm.cpp. Errors throw c10::Error (CUDA, NCCL)
// or loom::InputError (arguments).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "parallel/token_shard.h"

#include <cstddef>
#include <cstdint>

namespace loom::parallel::cuda {

enum class NormDtype { kFloat32, kBFloat16 };

size_t elementBytes(NormDtype dtype);

/// One call's operands: device pointers on the communicator's device, contiguous.
struct FusedNormArgs {
  const void* x = nullptr;         ///< [tokens, hidden] this rank's partial sums, `dtype`
  const void* residual = nullptr;  ///< all-reduce: [tokens, hidden]; reduce-scatter and
                                   ///< symmetric: [shardRows, hidden] (this rank's shard); `dtype`
  void* residual_out = nullptr;    ///< shaped like residual; may equal it (updated in place)
  const float* weight = nullptr;   ///< [hidden], float32
  void* out = nullptr;             ///< [tokens, hidden], `dtype`; overlaps no input
  int64_t tokens = 0;
  int64_t hidden = 0;
  NormDtype dtype = NormDtype::kBFloat16;
  double eps = 1e-5;
};

/// Device scratch allReduceAddRmsNorm needs: the float32 sum, [tokens, hidden].
size_t allReduceNormWorkspaceBytes(const FusedNormArgs& args);
/// REQUIRES: `workspace` has allReduceNormWorkspaceBytes(args) bytes, 16-byte aligned.
void allReduceAddRmsNorm(const FusedNormArgs& args, void* workspace, ncclComm_t comm, cudaStream_t stream);

/// Device scratch reduceScatterAddRmsNorm needs on a communicator of `ranks`: the
/// padded float32 partials, the float32 shard sum and the padded gather.
size_t reduceScatterNormWorkspaceBytes(const FusedNormArgs& args, int ranks);
/// REQUIRES: `workspace` has reduceScatterNormWorkspaceBytes(args, ranks) bytes, 16-byte aligned.
void reduceScatterAddRmsNorm(const FusedNormArgs& args, void* workspace, ncclComm_t comm, cudaStream_t stream);

}  // namespace loom::parallel::cuda
