// Fused residual-add + RMSNorm forward on CUDA for bfloat16 activations, over raw
// device buffers (the float32-only case is rms_norm.cuh's fusedAddRmsNormForward).
//
// Per row of `cols` elements, in float32 whatever the storage type:
//   v = x + residual,  residual_out = bf16(v),
//   y = bf16((v * r) * weight),  r = 1 / sqrt(sum(v^2) / cols + eps)
// The norm reads the unrounded v, so both outputs are the float32 computation
// rounded once (round to nearest even), as on the CPU (parallel_elastic.md §3.5).
// x may be float32: the all-reduce paths sum bfloat16 partials in float32 and hand
// that sum over without rounding it first.
//
// Kernel: one block per row (grid-stride beyond 65535 rows, up to 512 threads);
// the row is cached in float32 in dynamic shared memory (4 * cols bytes; more than
// 48 KiB is requested from the device, and a row wider than its opt-in limit, about
// 57K columns on an H100, is refused with InputError). Loads and stores move 16 bytes
// (8 bfloat16, or 4 floats twice) when cols % 8 == 0 and every pointer is 16-byte
// aligned; otherwise one element per access. The row sum has a fixed order
// (no atomics): results are bitwise reproducible run to run.
//
// Each launcher enqueues one kernel on `stream`, checks it with LOOM_CUDA_CHECK
// (throws c10::Error) and does not synchronise. Pointers are device pointers that
// must stay valid until the stream has run the work.
//
// REQUIRES: rows >= 0, cols >= 1. residual_out may equal residual, and y may equal
// x (same type), for in-place updates; no other output may overlap an input.
// rstd (one float per row, for a backward) may be null.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace loom::kernels::cuda {

void fusedAddRmsNormForward(const __nv_bfloat16* x, const __nv_bfloat16* residual, const float* weight,
                            __nv_bfloat16* y, __nv_bfloat16* residual_out, float* rstd, int64_t rows, int64_t cols,
                            double eps, cudaStream_t stream);

/// x is a float32 sum (e.g. an all-reduce's result); residual and outputs bfloat16.
void fusedAddRmsNormForward(const float* x, const __nv_bfloat16* residual, const float* weight, __nv_bfloat16* y,
                            __nv_bfloat16* residual_out, float* rstd, int64_t rows, int64_t cols, double eps,
                            cudaStream_t stream);

/// out[i] = float(in[i]) for i < n (exact): the float32 staging of bfloat16 partial
/// sums before a float32 reduction. REQUIRES: n >= 0, no overlap.
void bfloat16ToFloat(const __nv_bfloat16* in, float* out, int64_t n, cudaStream_t stream);

}  // namespace loom::kernels::cuda
