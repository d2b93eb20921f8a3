// RMSNorm and fused residual-add + RMSNorm on the CPU, over raw row-major buffers.
//
// Shapes: x, y, residual, dy, dx are [rows, cols] contiguous; weight and dweight are
// [cols]; rstd is [rows]. T is float or double; every sum is accumulated in T.
//
// Forward (per row, n = cols):
//   r = 1 / sqrt(sum_j x_j^2 / n + eps)          (stored in rstd)
//   y_j = (x_j * r) * w_j
// Backward. With xh = x * r and g = dy * w, differentiating y_k = xh_k w_k through
// r(x) (dr/dx_j = -r^3 x_j / n) gives
//   dx_j = r * (g_j - xh_j * mean_k(g_k * xh_k))
//   dw_j = sum over rows of dy_j * xh_j
// Fused add: residual_out = x + residual (rounded to T), y = rmsNorm(residual_out);
// backward feeds residual_out's total gradient (the norm's dx plus d(residual_out)
// from residual_out's other consumers) to both x and residual, so dx == dresidual.
//
// Vectorisation: the inner loops use 32-byte GCC vector types with several
// independent accumulators; each entry point is compiled twice (x86-64-v3, i.e.
// AVX2+FMA, and the baseline) and picked at load time by the CPU it runs on.
//
// Determinism: rows are independent, so y, rstd and dx never depend on how rows
// are split over threads. dweight is reduced in row blocks whose boundaries are a
// function of `rows` alone; each block's partial sum is formed sequentially and
// the partials are added in block order. All outputs are therefore bitwise
// identical for any at::get_num_threads() on the same machine and build. Results
// may differ in the last bits between the AVX2 and the baseline variants
// (FMA contraction), i.e. between CPUs.
//
// REQUIRES for every call: rows >= 0, cols >= 1, no output aliases an input.
#pragma once

#include <cstdint>

namespace loom::kernels::cpu {

/// y = rmsNorm(x) * weight; rstd[i] = r of row i.
template <typename T>
void rmsNormForward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t cols, double eps);

/// Gradients of rmsNormForward for upstream gradient dy. `rstd` is the forward's output.
/// dweight may be null (weight needs no gradient); otherwise it is overwritten.
template <typename T>
void rmsNormBackward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx, T* dweight, int64_t rows,
                     int64_t cols);

/// residual_out = x + residual; y = rmsNorm(residual_out) * weight; rstd as above.
template <typename T>
void fusedAddRmsNormForward(const T* x, const T* residual, const T* weight, T* y, T* residual_out, T* rstd,
                            int64_t rows, int64_t cols, double eps);

/// Gradients of fusedAddRmsNormForward. dresidual_out (the gradient reaching
/// residual_out from its other consumers) may be null, meaning zero. dx receives the
/// gradient of both x and residual. dweight may be null, as in rmsNormBackward.
template <typename T>
void fusedAddRmsNormBackward(const T* dy, const T* dresidual_out, const T* residual_out, const T* weight, const T* rstd,
                             T* dx, T* dweight, int64_t rows, int64_t cols);

}  // namespace loom::kernels::cpu
