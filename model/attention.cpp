#include "model/attention.h"

#include "kernels/torch/causal_softmax_ops.h"
#include "runtime/core/error.h"
#include "runtime/core/torch_compat.h"

#include <ATen/ATen.h>

#include <cmath>

namespace loom::model {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

}  // namespace

AttentionImpl::AttentionImpl(const ModelOptions& opts, int64_t tp)
    : heads_(opts.heads / tp), kv_heads_(opts.kvHeads() / tp), head_dim_(opts.headDim()) {
  LOOM_CHECK_INPUT(tp >= 1 && opts.heads % tp == 0 && opts.kvHeads() % tp == 0, "attention: heads (", opts.heads,
                   ") and kv_heads (", opts.kvHeads(), ") must be multiples of the tensor-parallel size ", tp);
  wq = register_module("wq", linear(opts.dim, heads_ * head_dim_));
  wk = register_module("wk", linear(opts.dim, kv_heads_ * head_dim_));
  wv = register_module("wv", linear(opts.dim, kv_heads_ * head_dim_));
  wo = register_module("wo", linear(heads_ * head_dim_, opts.dim));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const RotaryEmbedding& rope) {
  const int64_t batch = x.size(0);
  const int64_t seq = x.size(1);
  const at::Tensor q = rope.apply(wq->forward(x).view({batch, seq, heads_, head_dim_}));
  const at::Tensor k = rope.apply(wk->forward(x).view({batch, seq, kv_heads_, head_dim_}));
  const at::Tensor v = wv->forward(x).view({batch, seq, kv_heads_, head_dim_});
  return wo->forward(attend(q, k, v).reshape({batch, seq, heads_ * head_dim_}));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const RotaryEmbedding& rope,
                                  const parallel::TokenLayout& layout, dist::Communicator& group) {
  const int64_t batch = x.size(0);
  const int64_t seq = x.size(1);
  const at::Tensor q = rope.applyAt(wq->forward(x).view({batch, seq, heads_, head_dim_}), layout.positions);
  const at::Tensor k = rope.applyAt(wk->forward(x).view({batch, seq, kv_heads_, head_dim_}), layout.positions);
  const at::Tensor v = wv->forward(x).view({batch, seq, kv_heads_, head_dim_});
  return wo->forward(parallel::ringAttention(q, k, v, layout, group).reshape({batch, seq, heads_ * head_dim_}));
}

at::Tensor AttentionImpl::forwardAfter(const at::Tensor& x, const parallel::TokenLayout& x_layout,
                                      const at::Tensor& prefix, const parallel::TokenLayout& prefix_layout,
                                      const RotaryEmbedding& rope, dist::Communicator* ring) {
  const int64_t batch = x.size(0);
  const int64_t tx = x.size(1);
  const int64_t tk = prefix.size(1) + tx;
  const at::Tensor both = at::cat({prefix, x}, 1);
  const at::Tensor key_positions = at::cat({prefix_layout.positions, x_layout.positions});
  const at::Tensor key_documents = at::cat({prefix_layout.documents, x_layout.documents});
  const at::Tensor q = rope.applyAt(wq->forward(x).view({batch, tx, heads_, head_dim_}), x_layout.positions);
  const at::Tensor k = rope.applyAt(wk->forward(both).view({batch, tk, kv_heads_, head_dim_}), key_positions);
  const at::Tensor v = wv->forward(both).view({batch, tk, kv_heads_, head_dim_});
  if (ring != nullptr && ring->size() > 1) {
    const at::Tensor out = parallel::ringAttention(q, x_layout, k, v, {key_positions, key_documents}, *ring);
    return wo->forward(out.reshape({batch, tx, heads_ * head_dim_}));
  }
  // Key j is visible to query i (token prefix + i) when j <= prefix + i and both are in one document.
  const at::Tensor query_index = at::arange(tk - tx, tk, at::kLong).unsqueeze(1);
  const at::Tensor visible = at::arange(tk, at::kLong).unsqueeze(0).le(query_index) &
                             x_layout.documents.unsqueeze(1).eq(key_documents.unsqueeze(0)) &
                             x_layout.documents.ge(0).unsqueeze(1);
  const int64_t group = heads_ / kv_heads_;
  const at::Tensor qh = q.transpose(1, 2);                                  // [B, H, Tx, hd]
  const at::Tensor kh = k.repeat_interleave(group, 2).permute({0, 2, 3, 1});  // [B, H, hd, Tk]
  const at::Tensor vh = v.repeat_interleave(group, 2).transpose(1, 2);      // [B, H, Tk, hd]
  // A large finite fill, not -inf: a padding query sees no key, and its (unused) row must stay finite.
  const at::Tensor scores = at::matmul(qh, kh).mul(1.0 / std::sqrt(static_cast<double>(head_dim_)))
                                .masked_fill(visible.logical_not().to(x.device()), -1e30);
  const at::Tensor out = at::matmul(at::softmax(scores, -1), vh).transpose(1, 2);  // [B, Tx, H, hd]
  return wo->forward(out.reshape({batch, tx, heads_ * head_dim_}));
}

// q: [B, T, H, hd], k/v: [B, T, KV, hd] -> [B, T, H, hd].
at::Tensor AttentionImpl::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const {
  const int64_t group = heads_ / kv_heads_;
#if LOOM_TORCH_HAS_SDPA
  const at::Tensor kx = k.repeat_interleave(group, 2).transpose(1, 2);
  const at::Tensor vx = v.repeat_interleave(group, 2).transpose(1, 2);
  return at::scaled_dot_product_attention(q.transpose(1, 2), kx, vx, {}, 0.0, /*is_causal=*/true).transpose(1, 2);
#else
  const int64_t batch = q.size(0);
  const int64_t seq = q.size(1);
  // Each KV head serves its `group` query heads in one GEMM: queries are laid out
  // [B, KV, group*T, hd] so the keys need no copy per query head.
  const at::Tensor qg = q.view({batch, seq, kv_heads_, group, head_dim_})
                            .permute({0, 2, 3, 1, 4})
                            .reshape({batch, kv_heads_, group * seq, head_dim_});
  const at::Tensor kt = k.permute({0, 2, 3, 1});  // [B, KV, hd, T]
  const at::Tensor vg = v.permute({0, 2, 1, 3});  // [B, KV, T, hd]
  // Scale, causal mask and softmax in one fused kernel over [B*KV*group, T, T].
  const at::Tensor probs =
      kernels::causalSoftmax(at::matmul(qg, kt).view({batch * kv_heads_ * group, seq, seq}),
                             1.0 / std::sqrt(static_cast<double>(head_dim_)))
          .view({batch, kv_heads_, group * seq, seq});
  return at::matmul(probs, vg)
      .view({batch, kv_heads_, group, seq, head_dim_})
      .permute({0, 3, 1, 2, 4});  // [B, T, KV, group, hd] == [B, T, H, hd]
#endif
}

}  // namespace loom::model
