// The Llama-style decoder (docs/model.md). Parameter names and shapes are the
// safetensors keys (Linear weights are [out_features, in_features]):
//   tok_emb.weight [V, d]
//   blocks.i.attn_norm.weight [d], blocks.i.attn.{wq,wk,wv,wo}.weight, blocks.i.mlp_norm.weight [d],
//   blocks.i.mlp.{w1,w3,w2}.weight
//   norm.weight [d], head.weight [V, d] (untied from tok_emb)
// Per block: h = x + wo(attn(rope(wq n1 x), rope(wk n1 x), wv n1 x)); out = h + w2(silu(w1 n2 h) * w3 n2 h).
#pragma once

#include "model/attention.h"
#include "model/mlp.h"
#include "model/rope.h"
#include "parallel/tensor_parallel.h"
#include "runtime/config/options.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <string>
#include <utility>
#include <vector>

namespace loom::model {

/// Holds an RMSNorm gain named "weight"; the norm itself runs in loom's fused
/// kernels (kernels/torch/rms_norm_ops.h), called by the model.
class RmsNormImpl : public torch::nn::Module {
 public:
  explicit RmsNormImpl(int64_t dim);
  at::Tensor weight;
};
TORCH_MODULE(RmsNorm);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelOptions& opts, int64_t tp = 1);
  RmsNorm attn_norm{nullptr};
  Attention attn{nullptr};
  RmsNorm mlp_norm{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

class LlamaImpl : public torch::nn::Module {
 public:
  /// tp > 1: this rank's shard of a tensor-parallel model over tp ranks
  /// (model/tensor_parallel_shards.h names what is split); it runs only
  /// through the forwards that take a TensorParallel group of that size.
  explicit LlamaImpl(const ModelOptions& opts, int64_t tp = 1);

  /// tokens: int64 [batch, seq] -> logits float [batch, seq, vocab].
  at::Tensor forward(const at::Tensor& tokens);
  /// Context parallel: `tokens` [batch, seq] are this rank's share of
  /// sequences spread over `group`, at layout.positions in documents
  /// layout.documents (-1: padding); attention runs as ring attention over
  /// the group. Collective over `group`, forward and backward.
  at::Tensor forward(const at::Tensor& tokens, const parallel::TokenLayout& layout, dist::Communicator& group);
  /// Tensor parallel (docs/tensor_parallel.md): every rank of `tp` passes the
  /// same tokens and gets the same logits; micro-batches with enough tokens
  /// run as two halves whose communication overlaps (tp.parts()). Collective
  /// over tp.group(), forward and backward.
  at::Tensor forward(const at::Tensor& tokens, parallel::TensorParallel& tp);
  /// Tensor and context parallel: as forward(tokens, layout, group), with
  /// this rank's attention heads and ring attention over `group` (the ranks
  /// holding the same shard); collective over both groups.
  at::Tensor forward(const at::Tensor& tokens, const parallel::TokenLayout& layout, dist::Communicator& group,
                     parallel::TensorParallel& tp);

  /// The tensor-parallel size this model's shards were built for.
  int64_t tensorParallelSize() const { return tp_; }

  const ModelOptions& options() const { return opts_; }
  /// Parameters in registration order with their safetensors names.
  std::vector<std::pair<std::string, at::Tensor>> namedParameters() const;

  torch::nn::Embedding tok_emb{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  RmsNorm norm{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  /// The blocks, with attention given as a function of (block, normed input).
  template <typename Attend>
  at::Tensor run(const at::Tensor& tokens, const Attend& attend);
  /// A part of a micro-batch under token splitting: sequences [first,
  /// first + count), or with by_tokens tokens [first, first + count) of its
  /// one sequence.
  struct TpPart {
    int64_t first = 0;
    int64_t count = 0;
    bool by_tokens = false;
  };
  /// The tensor-parallel blocks; attend(block, normed, part, prefix) returns
  /// the attention's partial output for a part, `prefix` being the normalised
  /// tokens before a second token half (undefined otherwise; model/llama_tp.cpp).
  /// `token_halves`: a one-sequence micro-batch may split into token halves.
  template <typename Attend>
  at::Tensor runTensorParallel(const at::Tensor& tokens, parallel::TensorParallel& tp, bool token_halves,
                               const Attend& attend);
  void requireTensorParallel(int64_t size) const;

  ModelOptions opts_;
  int64_t tp_ = 1;
  RotaryEmbedding rope_;
};
TORCH_MODULE(Llama);

/// Sum (not mean) of the token cross-entropies of `logits` [..., V] against
/// `targets` [...]: the trainer divides by the global token count (ARCHITECTURE §2).
at::Tensor crossEntropySum(const at::Tensor& logits, const at::Tensor& targets);

/// Model FLOPs per trained token (forward + backward), the MFU numerator:
///   6 * (N - N_embedding) + 12 * layers * heads * head_dim * seq_len
/// (torchtitan / PaLM; attention counted without causal savings, tok_emb excluded, head included).
double trainingFlopsPerToken(const ModelOptions& opts, int64_t seq_len);

/// Number of parameters of a model with these options.
int64_t parameterCount(const ModelOptions& opts);

}  // namespace loom::model
