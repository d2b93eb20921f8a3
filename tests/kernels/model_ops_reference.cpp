#include "tests/kernels/model_ops_reference.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace loom::test {

at::Tensor referenceRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start_pos) {
  const int64_t seq = x.size(1);
  const int64_t pairs = x.size(3) / 2;
  const at::Tensor c = cos.narrow(0, start_pos, seq).view({1, seq, 1, pairs}).to(x.scalar_type());
  const at::Tensor s = sin.narrow(0, start_pos, seq).view({1, seq, 1, pairs}).to(x.scalar_type());
  const at::Tensor pairs_view = x.unflatten(-1, {pairs, 2});
  const at::Tensor even = pairs_view.select(-1, 0);
  const at::Tensor odd = pairs_view.select(-1, 1);
  return at::stack({even * c - odd * s, even * s + odd * c}, -1).flatten(-2);
}

at::Tensor causalMask(int64_t q_len, int64_t k_len) {
  return at::ones({q_len, k_len}, at::kBool).tril(k_len - q_len);
}

at::Tensor referenceCausalSoftmax(const at::Tensor& scores, double scale) {
  const int64_t q_len = scores.size(-2);
  const int64_t k_len = scores.size(-1);
  const at::Tensor mask = at::full({q_len, k_len}, -std::numeric_limits<double>::infinity(), scores.options())
                              .masked_fill(causalMask(q_len, k_len), 0.0);
  return at::softmax(scores * scale + mask, -1);
}

at::Tensor referenceSwiglu(const at::Tensor& gate, const at::Tensor& up) {
  return at::silu(gate) * up;
}

double causalSoftmaxGradScale(const at::Tensor& probs, const at::Tensor& dprobs, double scale) {
  if (probs.numel() == 0) {
    return 0;
  }
  const at::Tensor p = probs.detach().to(at::kDouble);
  const at::Tensor dp = dprobs.detach().to(at::kDouble);
  const at::Tensor row_dot = (dp * p).sum(-1, /*keepdim=*/true).abs();
  return std::abs(scale) * (p * (dp.abs() + row_dot)).max().item<double>();
}

double swigluGateGradScale(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& dy) {
  if (gate.numel() == 0) {
    return 0;
  }
  const at::Tensor g = gate.detach().to(at::kDouble);
  const at::Tensor s = at::sigmoid(g);
  const at::Tensor terms =
      (dy.detach().to(at::kDouble) * up.detach().to(at::kDouble) * s).abs() * (1 + (g * (1 - s)).abs());
  return terms.max().item<double>();
}

}  // namespace loom::test
