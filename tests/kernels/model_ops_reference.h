// Plain-libtorch references for loom's rope, causal_softmax and swiglu ops: the
// composites the model used before the fused kernels (model/rope.cpp,
// model/attention.cpp, model/mlp.cpp), differentiable by autograd, with no loom code.
// Tests evaluate them in float64.
//
// Tolerance scales: each op's rounding error follows the magnitude of the terms an
// output is formed from, not the output itself, wherever terms can cancel:
//   rope:     y[2i] = x[2i] c - x[2i+1] s   -> max |x| (|c|, |s| <= 1); same for dy
//   softmax:  ds = scale p (dp - sum(dp p)) -> |scale| max p (|dp| + |sum(dp p)|)
//   swiglu:   dgate = dy up s (1 + g (1 - s)) -> max |dy up s| (1 + |g (1 - s)|)
// The tests use atol = rtol * scale for those outputs and atol 0 for the others.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace loom::test {

/// model/rope.cpp's chain: unflatten the pairs, select even/odd, rotate, stack,
/// flatten. x: [B, T, H, hd]; cos, sin: [max_seq_len, hd / 2] (cast to x's dtype).
at::Tensor referenceRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start_pos);

/// The causal mask of a [q_len, k_len] score matrix: true where query i may see key j,
/// i.e. j <= i + k_len - q_len.
at::Tensor causalMask(int64_t q_len, int64_t k_len);

/// model/attention.cpp's chain: scale, add a -inf mask above the causal diagonal,
/// softmax over the last dim. scores: [..., q_len, k_len].
at::Tensor referenceCausalSoftmax(const at::Tensor& scores, double scale);

/// model/mlp.cpp's chain: silu(gate) * up.
at::Tensor referenceSwiglu(const at::Tensor& gate, const at::Tensor& up);

/// |scale| * max over entries of p * (|dp| + |sum over the row of dp * p|), in float64.
double causalSoftmaxGradScale(const at::Tensor& probs, const at::Tensor& dprobs, double scale);

/// max over elements of |dy * up * s| * (1 + |gate * (1 - s)|), s = sigmoid(gate), in float64.
double swigluGateGradScale(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& dy);

}  // namespace loom::test
