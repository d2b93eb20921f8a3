// Causal multi-head self-attention with grouped-query heads (kv_heads <= heads).
//
// Query head h reads key/value head h / (heads / kv_heads), as in Llama's
// repeat_kv. Parameter names (safetensors keys, relative to the block):
//   attn.wq.weight [d, d], attn.wk.weight [kv*hd, d], attn.wv.weight [kv*hd, d], attn.wo.weight [d, d].
#pragma once

#include "model/rope.h"
#include "parallel/ring_attention.h"
#include "runtime/config/options.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace loom::model {

class AttentionImpl : public torch::nn::Module {
 public:
  /// With tensor parallelism over `tp` ranks, this rank's share: heads/tp
  /// query and kv_heads/tp key/value heads (wq, wk, wv split by rows, wo by
  /// columns; model/tensor_parallel_shards.h), and forward() returns the
  /// partial sum of the output projection.
  explicit AttentionImpl(const ModelOptions& opts, int64_t tp = 1);

  /// x: [batch, seq, dim] (already normalised) -> [batch, seq, dim].
  at::Tensor forward(const at::Tensor& x, const RotaryEmbedding& rope);
  /// Context parallel: x holds this rank's tokens of sequences spread over
  /// `group` (parallel/ring_attention.h), at layout.positions; causal within
  /// each document.
  at::Tensor forward(const at::Tensor& x, const RotaryEmbedding& rope, const parallel::TokenLayout& layout,
                     dist::Communicator& group);

  /// The second half of a sequence split in two (token splitting,
  /// docs/tensor_parallel.md): x [batch, Tx, dim] attends to `prefix`
  /// [batch, Tp, dim] (the tokens before it, already normalised) and to
  /// itself causally, within documents; each layout gives its tokens'
  /// positions and documents (-1: padding). Plain libtorch ops, or with a
  /// `ring` of several ranks ring attention: every rank holds its own prefix
  /// and second half (as many tokens as the others) and x attends to all of
  /// them (parallel::ringAttention with a query layout).
  at::Tensor forwardAfter(const at::Tensor& x, const parallel::TokenLayout& x_layout, const at::Tensor& prefix,
                          const parallel::TokenLayout& prefix_layout, const RotaryEmbedding& rope,
                          dist::Communicator* ring = nullptr);

  torch::nn::Linear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr};

 private:
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const;

  int64_t heads_;
  int64_t kv_heads_;
  int64_t head_dim_;
};
TORCH_MODULE(Attention);

}  // namespace loom::model
