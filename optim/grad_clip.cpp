#include "optim/grad_clip.h"

#include <ATen/ATen.h>

#include <cmath>

namespace loom::optim {

double globalGradNorm(const std::vector<at::Tensor>& params) {
  double sum_sq = 0.0;
  for (const at::Tensor& p : params) {
    const at::Tensor& g = p.grad();
    if (g.defined()) {
      sum_sq += g.to(at::kDouble).pow(2).sum().item<double>();
    }
  }
  return std::sqrt(sum_sq);
}

double clipGradNorm(const std::vector<at::Tensor>& params, double max_norm) {
  const double norm = globalGradNorm(params);
  if (max_norm <= 0.0) {
    return norm;
  }
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    for (const at::Tensor& p : params) {
      at::Tensor g = p.grad();
      if (g.defined()) {
        g.mul_(coef);
      }
    }
  }
  return norm;
}

}  // namespace loom::optim
