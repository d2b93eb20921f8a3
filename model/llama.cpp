#include "model/llama.h"

#include "kernels/torch/rms_norm_ops.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

namespace loom::model {

RmsNormImpl::RmsNormImpl(int64_t dim) {
  weight = register_parameter("weight", at::ones({dim}));
}

BlockImpl::BlockImpl(const ModelOptions& opts, int64_t tp) {
  attn_norm = register_module("attn_norm", RmsNorm(opts.dim));
  attn = register_module("attn", Attention(opts, tp));
  mlp_norm = register_module("mlp_norm", RmsNorm(opts.dim));
  mlp = register_module("mlp", Mlp(opts, tp));
}

LlamaImpl::LlamaImpl(const ModelOptions& opts, int64_t tp)
    : opts_(opts), tp_(tp), rope_(opts.headDim(), opts.max_seq_len, opts.rope_theta) {
  tok_emb = register_module("tok_emb", torch::nn::Embedding(opts.vocab_size, opts.dim));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < opts.layers; ++i) {
    blocks->push_back(Block(opts, tp));
  }
  norm = register_module("norm", RmsNorm(opts.dim));
  head = register_module("head", torch::nn::Linear(torch::nn::LinearOptions(opts.dim, opts.vocab_size).bias(false)));
}

// The residual stream is carried between blocks so that every norm after the
// first is one fused "add residual, then normalise" kernel:
//   n1_0 = norm(x);  per block i: (n2, h) = add_norm(attn_i(n1_i), x_i);
//   (n1_{i+1}, x_{i+1}) = add_norm(mlp_i(n2), h), the last one with the final norm's gain.
at::Tensor LlamaImpl::forward(const at::Tensor& tokens) {
  requireTensorParallel(1);
  return run(tokens, [this](BlockImpl& block, const at::Tensor& normed) { return block.attn->forward(normed, rope_); });
}

at::Tensor LlamaImpl::forward(const at::Tensor& tokens, const parallel::TokenLayout& layout, dist::Communicator& group) {
  requireTensorParallel(1);
  return run(tokens, [&](BlockImpl& block, const at::Tensor& normed) {
    return block.attn->forward(normed, rope_, layout, group);
  });
}

void LlamaImpl::requireTensorParallel(int64_t size) const {
  LOOM_CHECK_INPUT(tp_ == size, "model: this rank holds a shard for tensor parallelism over ", tp_,
                   " ranks, but the forward runs over ", size, tp_ > 1 ? " (pass the TensorParallel group)" : "");
}

template <typename Attend>
at::Tensor LlamaImpl::run(const at::Tensor& tokens, const Attend& attend) {
  at::Tensor residual = tok_emb->forward(tokens);
  const double eps = opts_.norm_eps;
  at::Tensor normed = kernels::rmsNorm(residual, blocks->at<BlockImpl>(0).attn_norm->weight, eps);
  for (size_t i = 0; i < blocks->size(); ++i) {
    BlockImpl& block = blocks->at<BlockImpl>(i);
    const at::Tensor attn_out = attend(block, normed);
    std::tie(normed, residual) = kernels::fusedAddRmsNorm(attn_out, residual, block.mlp_norm->weight, eps);
    const at::Tensor mlp_out = block.mlp->forward(normed);
    const at::Tensor& next_gain =
        i + 1 < blocks->size() ? blocks->at<BlockImpl>(i + 1).attn_norm->weight : norm->weight;
    std::tie(normed, residual) = kernels::fusedAddRmsNorm(mlp_out, residual, next_gain, eps);
  }
  return head->forward(normed);
}

std::vector<std::pair<std::string, at::Tensor>> LlamaImpl::namedParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(/*recurse=*/true)) {
    out.emplace_back(item.key(), item.value());
  }
  return out;
}

at::Tensor crossEntropySum(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), {}, at::Reduction::Sum);
}

int64_t parameterCount(const ModelOptions& opts) {
  const int64_t d = opts.dim;
  const int64_t kv = opts.kvHeads() * opts.headDim();
  const int64_t per_block = 2 * d + 2 * d * d + 2 * kv * d + 3 * opts.ffn_dim * d;
  return 2 * opts.vocab_size * d + opts.layers * per_block + d;
}

double trainingFlopsPerToken(const ModelOptions& opts, int64_t seq_len) {
  const double non_embedding = static_cast<double>(parameterCount(opts) - opts.vocab_size * opts.dim);
  return 6.0 * non_embedding + 12.0 * static_cast<double>(opts.layers * opts.heads * opts.headDim() * seq_len);
}

}  // namespace loom::model
