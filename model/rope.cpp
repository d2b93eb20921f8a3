#include "model/rope.h"

#include "kernels/torch/rope_ops.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <cmath>

namespace loom::model {

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, int64_t max_seq_len, double theta) {
  LOOM_CHECK(head_dim % 2 == 0 && max_seq_len >= 1 && theta > 0, "RoPE: bad head_dim ", head_dim, " / max_seq_len ",
             max_seq_len, " / theta ", theta);
  const int64_t pairs = head_dim / 2;
  const at::Tensor inv_freq =
      at::pow(theta, at::arange(0, pairs, at::kDouble) * (-2.0 / static_cast<double>(head_dim)));
  const at::Tensor angles = at::outer(at::arange(max_seq_len, at::kDouble), inv_freq);
  cos_ = angles.cos().to(at::kFloat);
  sin_ = angles.sin().to(at::kFloat);
}

at::Tensor RotaryEmbedding::apply(const at::Tensor& x, int64_t start_pos) const {
  const int64_t seq = x.size(1);
  LOOM_CHECK(start_pos >= 0 && start_pos + seq <= maxSeqLen(), "RoPE: positions [", start_pos, ", ",
             start_pos + seq, ") exceed model.max_seq_len (", maxSeqLen(), ")");
  // The tables live on the CPU; a model moved to a GPU takes a copy per call (max_seq_len x hd/2 floats).
  return kernels::rope(x, cos_.to(x.device()), sin_.to(x.device()), start_pos);
}

at::Tensor RotaryEmbedding::applyAt(const at::Tensor& x, const at::Tensor& positions) const {
  LOOM_CHECK(positions.dim() == 1 && positions.numel() == x.size(1), "RoPE: ", positions.numel(),
             " positions for a sequence of ", x.size(1));
  LOOM_CHECK(positions.numel() == 0 || (positions.min().item<int64_t>() >= 0 &&
                                        positions.max().item<int64_t>() < maxSeqLen()),
             "RoPE: positions exceed model.max_seq_len (", maxSeqLen(), ")");
  const at::Tensor index = positions.to(at::kCPU);
  return kernels::rope(x, cos_.index_select(0, index).to(x.device()), sin_.index_select(0, index).to(x.device()), 0);
}

}  // namespace loom::model
