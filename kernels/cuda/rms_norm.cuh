// RMSNorm and fused residual-add + RMSNorm on CUDA, float32, over raw device buffers.
//
// Same layout, formulas and null-pointer conventions as kernels/cpu/rms_norm.h (which
// derives the backward); every sum is accumulated in float. Each launcher enqueues
// its kernels on `stream`, checks each launch with LOOM_CUDA_CHECK (throws c10::Error),
// and returns without synchronising. All pointers are device pointers that must
// stay valid until the stream has run the work.
//
// Kernels: the forward and dx run one thread block per row (grid-stride over rows)
// and reduce the row in registers, warp shuffles and one shared-memory hop. dweight
// is reduced in two passes: rmsNormDweightPartialKernel sums dy * x * rstd over fixed
// chunks of rows into `workspace`, rmsNormDweightSumKernel adds the chunks in order.
//
// Determinism: every reduction has an order fixed by (rows, cols) alone (no atomics),
// so repeated runs give bitwise identical results on the same GPU model.
//
// REQUIRES for every call: rows >= 0, cols >= 1, no output aliases an input, except
// that the fused forward's residual_out may equal residual (updated in place). The
// forwards' rstd may be null when no backward follows (the fused all-reduce paths).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace loom::kernels::cuda {

void rmsNormForward(const float* x, const float* weight, float* y, float* rstd, int64_t rows, int64_t cols, double eps,
                    cudaStream_t stream);

/// Bytes of device scratch memory the backward launchers need for (rows, cols).
size_t rmsNormBackwardWorkspaceBytes(int64_t rows, int64_t cols);

/// dweight may be null (no weight gradient; workspace may then be null too).
void rmsNormBackward(const float* dy, const float* x, const float* weight, const float* rstd, float* dx, float* dweight,
                     void* workspace, int64_t rows, int64_t cols, cudaStream_t stream);

void fusedAddRmsNormForward(const float* x, const float* residual, const float* weight, float* y, float* residual_out,
                            float* rstd, int64_t rows, int64_t cols, double eps, cudaStream_t stream);

/// dresidual_out may be null (zero); dx is the gradient of both x and residual.
void fusedAddRmsNormBackward(const float* dy, const float* dresidual_out, const float* residual_out,
                             const float* weight, const float* rstd, float* dx, float* dweight, void* workspace,
                             int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace loom::kernels::cuda
