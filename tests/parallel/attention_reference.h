// Single-device attention in plain libtorch (double precision, autograd), the
// reference the block and ring attention tests compare against.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

namespace loom::parallel::test {

/// q [B, L, H, hd], k and v [B, Lk, KV, hd]; `mask` bool [L, Lk] (every query
/// row must allow some key). Returns [B, L, H, hd]; differentiable.
inline at::Tensor referenceAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& mask) {
  const int64_t group = q.size(2) / k.size(2);
  const at::Tensor qh = q.transpose(1, 2);                                 // [B, H, L, hd]
  const at::Tensor kh = k.repeat_interleave(group, 2).transpose(1, 2);     // [B, H, Lk, hd]
  const at::Tensor vh = v.repeat_interleave(group, 2).transpose(1, 2);
  const at::Tensor scores = at::matmul(qh, kh.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3)));
  const at::Tensor probs = at::softmax(scores.masked_fill(mask.logical_not(), -INFINITY), -1);
  return at::matmul(probs, vh).transpose(1, 2);
}

/// log-sum-exp of the masked scores, [B, H, L] (for checking a block's lse).
inline at::Tensor referenceLse(const at::Tensor& q, const at::Tensor& k, const at::Tensor& mask) {
  const int64_t group = q.size(2) / k.size(2);
  const at::Tensor scores = at::matmul(q.transpose(1, 2), k.repeat_interleave(group, 2).transpose(1, 2).transpose(2, 3)) /
                            std::sqrt(static_cast<double>(q.size(3)));
  return at::logsumexp(scores.masked_fill(mask.logical_not(), -INFINITY), -1);
}

/// max |a - b| as a double.
inline double maxAbsDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace loom::parallel::test
