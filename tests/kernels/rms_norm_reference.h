// Plain-libtorch references for loom's RMSNorm ops: composites of ATen ops with
// no loom code, differentiable by autograd, so tests can check both the values and
// the gradients of the kernels against them.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace loom::test {

/// x * rsqrt(mean(x^2, last dim) + eps) * weight
at::Tensor referenceRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// (referenceRmsNorm(x + residual), x + residual)
std::tuple<at::Tensor, at::Tensor> referenceFusedAddRmsNorm(const at::Tensor& x, const at::Tensor& residual,
                                                            const at::Tensor& weight, double eps);

/// The magnitudes the RMSNorm gradients are formed from, in float64, for tolerances:
/// dx_j = r*g_j - r*xh_j*mean(g*xh) cancels (nearly completely for one column, where
/// dx = r*g*eps/(x^2+eps)), so its rounding error follows max|r*g| + max|r*xh*mean(g*xh)|,
/// not |dx|; dw sums dy*xh over rows, so its error follows max over columns of the sum
/// of |dy*xh|. (g = dy*w, xh = x*r, r = rsqrt(mean(x^2) + eps).)
struct GradientScales {
  double dx = 0;
  double dweight = 0;
};
GradientScales gradientScales(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& dy, double eps);

}  // namespace loom::test
