#include "tests/kernels/rms_norm_reference.h"

#include <ATen/ATen.h>

namespace loom::test {

at::Tensor referenceRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

std::tuple<at::Tensor, at::Tensor> referenceFusedAddRmsNorm(const at::Tensor& x, const at::Tensor& residual,
                                                            const at::Tensor& weight, double eps) {
  at::Tensor residual_out = x + residual;
  return {referenceRmsNorm(residual_out, weight, eps), residual_out};
}

GradientScales gradientScales(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& dy, double eps) {
  const at::Tensor xd = x.detach().to(at::kDouble);
  const at::Tensor g = dy.detach().to(at::kDouble) * weight.detach().to(at::kDouble);
  const at::Tensor r = at::rsqrt(xd.pow(2).mean(-1, /*keepdim=*/true) + eps);
  const at::Tensor xh = xd * r;
  const at::Tensor mean_g_xh = (g * xh).mean(-1, /*keepdim=*/true);
  GradientScales scales;
  if (x.numel() == 0) {
    return scales;
  }
  scales.dx = ((r * g).abs().max() + (r * xh * mean_g_xh).abs().max()).item<double>();
  scales.dweight = (dy.detach().to(at::kDouble) * xh).abs().reshape({-1, x.size(-1)}).sum(0).max().item<double>();
  return scales;
}

}  // namespace loom::test
