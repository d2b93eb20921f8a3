// Rotary position embedding (RoPE) over consecutive pairs.
//
// For head dim hd, pair i = (x[2i], x[2i+1]) of a head at position pos is
// rotated by angle pos * theta^(-2i/hd):
//   x'[2i]   = x[2i] cos a - x[2i+1] sin a
//   x'[2i+1] = x[2i] sin a + x[2i+1] cos a
// The cos/sin tables are computed once in double and stored as float; the
// rotation itself is loom's fused kernel (kernels/torch/rope_ops.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace loom::model {

class RotaryEmbedding {
 public:
  /// REQUIRES: head_dim even, max_seq_len >= 1, theta > 0.
  RotaryEmbedding(int64_t head_dim, int64_t max_seq_len, double theta);

  /// x: [batch, seq, heads, head_dim], positions start_pos .. start_pos + seq - 1.
  at::Tensor apply(const at::Tensor& x, int64_t start_pos = 0) const;
  /// x: [batch, seq, heads, head_dim]; token t at positions[t] (int64 [seq],
  /// each in [0, max_seq_len)): a context-parallel share of a sequence.
  at::Tensor applyAt(const at::Tensor& x, const at::Tensor& positions) const;

  int64_t maxSeqLen() const { return cos_.size(0); }

 private:
  at::Tensor cos_;  // [max_seq_len, head_dim / 2]
  at::Tensor sin_;
};

}  // namespace loom::model
