// Internal to parallel/cuda: the device side of the symmetric-memory fused norm
// (symmetric_norm.h is the public face). TokenWeave's fused_rs_ln_ag_cta
// (parallel_elastic.md §3.3) on NCCL 2.28's device API:
//
//   LSA barrier (acquire-release) across the ranks' CTA b, for every CTA b;
//   for each token t of this rank's shard [rank * s, rank * s + s), CTA-strided:
//     a   = sum over ranks of staging[t]       multicast: multimem.ld_reduce (the
//                                              NVSwitch sums, float32 accumulation);
//                                              otherwise loads from every peer's
//                                              window over NVLink, summed in float32
//                                              in rank order
//     v   = a + residual[t - rank * s]          (float32; residual_out = dtype(v))
//     out = dtype(v * rsqrt(mean(v^2) + eps) * weight)
//     staging[t] = out on every rank            multicast: one multimem.st; otherwise
//                                              a store to every peer's window
//   LSA barrier (acquire-release): no rank reuses its window before every peer is done.
//
// Padded shard rows (t >= tokens) read no staging row (a = 0) and write none, so
// residual_out = residual there, as in the reduce-scatter path. With multicast and
// bfloat16 the switch returns `a` rounded to bfloat16 before the residual add
// (TokenWeave's rounding, within bfloat16 tolerance of the float32 semantics); the
// unicast variant and float32 keep `a` in float32.
//
// Vector groups of 8 elements (16 bytes of bfloat16, 32 of float32): the caller
// guarantees hidden % 8 == 0 and 16-byte aligned residual, residual_out and weight.
// The multicast variant needs sm_90 (it traps elsewhere; the host never selects it there).
#pragma once

#include "parallel/cuda/fused_allreduce_norm_cuda.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
// NCCL 2.28's device headers leave parameters unused, which loom's -Werror builds refuse.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <nccl_device.h>
#pragma GCC diagnostic pop

#include <cstddef>
#include <cstdint>

namespace loom::parallel::cuda::detail {

struct SymmetricNormLaunch {
  ncclDevComm dev_comm;     ///< by value: the kernel reads it from its parameters
  ncclWindow_t window;      ///< the staging buffer's window
  int64_t staging_row = 0;  ///< window row holding token 0 of this call
  int64_t tokens = 0;
  int64_t hidden = 0;
  int64_t shard_rows = 0;  ///< s = ceil(tokens / ranks)
  const void* residual = nullptr;
  void* residual_out = nullptr;
  const float* weight = nullptr;
  float eps = 1e-5f;
};

struct SymmetricNormShape {
  unsigned blocks = 0;      ///< min(max_ctas, shard_rows): every rank computes the same
  int threads = 0;          ///< min(1024, hidden / 8 rounded up to a warp)
  size_t shared_bytes = 0;  ///< the float32 row: 4 * hidden
};

SymmetricNormShape symmetricNormShape(int64_t shard_rows, int64_t hidden, int max_ctas);

/// Enqueues the kernel with `shape` on `stream` and checks the launch.
void launchSymmetricAddRmsNorm(const SymmetricNormLaunch& args, NormDtype dtype, bool multicast,
                               const SymmetricNormShape& shape, cudaStream_t stream);

}  // namespace loom::parallel::cuda::detail
