// An independent, deliberately naive plain-libtorch implementation of the model
// in docs/model.md (per-head loops, per-pair RoPE, composite RMSNorm), used as
// the reference the real model is compared with. Shares no code with model/.
#pragma once

#include "runtime/config/options.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <string>

namespace loom::model::test {

using Weights = std::map<std::string, at::Tensor>;

inline at::Tensor referenceRmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// x: [B, T, hd]; rotates pair i of position t by t * theta^(-2i/hd).
inline at::Tensor referenceRope(const at::Tensor& x, double theta) {
  const int64_t seq = x.size(1);
  const int64_t hd = x.size(2);
  std::vector<at::Tensor> columns;
  for (int64_t i = 0; i < hd / 2; ++i) {
    const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
    const at::Tensor angle = at::arange(seq, x.options()) * freq;  // [T]
    const at::Tensor c = angle.cos().view({1, seq});
    const at::Tensor s = angle.sin().view({1, seq});
    const at::Tensor a = x.select(2, 2 * i);
    const at::Tensor b = x.select(2, 2 * i + 1);
    columns.push_back(a * c - b * s);
    columns.push_back(a * s + b * c);
  }
  return at::stack(columns, 2);
}

inline at::Tensor referenceLogits(const Weights& w, const ModelOptions& o, const at::Tensor& tokens) {
  const int64_t batch = tokens.size(0);
  const int64_t seq = tokens.size(1);
  const int64_t hd = o.headDim();
  const int64_t group = o.heads / o.kvHeads();
  const at::Tensor future = at::ones({seq, seq}, at::kBool).triu(1);
  at::Tensor x = w.at("tok_emb.weight").index_select(0, tokens.reshape({-1})).view({batch, seq, o.dim});
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    const at::Tensor n1 = referenceRmsNorm(x, w.at(p + "attn_norm.weight"), o.norm_eps);
    const at::Tensor q = at::matmul(n1, w.at(p + "attn.wq.weight").t());
    const at::Tensor k = at::matmul(n1, w.at(p + "attn.wk.weight").t());
    const at::Tensor v = at::matmul(n1, w.at(p + "attn.wv.weight").t());
    std::vector<at::Tensor> heads;
    for (int64_t h = 0; h < o.heads; ++h) {
      const int64_t kvh = h / group;
      const at::Tensor qh = referenceRope(q.narrow(2, h * hd, hd), o.rope_theta);
      const at::Tensor kh = referenceRope(k.narrow(2, kvh * hd, hd), o.rope_theta);
      const at::Tensor vh = v.narrow(2, kvh * hd, hd);
      const at::Tensor scores = at::matmul(qh, kh.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
      const at::Tensor masked = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
      heads.push_back(at::matmul(at::softmax(masked, -1), vh));
    }
    x = x + at::matmul(at::cat(heads, 2), w.at(p + "attn.wo.weight").t());
    const at::Tensor n2 = referenceRmsNorm(x, w.at(p + "mlp_norm.weight"), o.norm_eps);
    const at::Tensor gate = at::silu(at::matmul(n2, w.at(p + "mlp.w1.weight").t()));
    const at::Tensor up = at::matmul(n2, w.at(p + "mlp.w3.weight").t());
    x = x + at::matmul(gate * up, w.at(p + "mlp.w2.weight").t());
  }
  return at::matmul(referenceRmsNorm(x, w.at("norm.weight"), o.norm_eps), w.at("head.weight").t());
}

}  // namespace loom::model::test
