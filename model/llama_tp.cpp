// The tensor-parallel forward of LlamaImpl (docs/tensor_parallel.md).
//
// Per sublayer and part (half of the micro-batch's sequences when the
// tensor-parallel group splits it, half of the tokens of a one-sequence
// micro-batch, else all of it; TensorParallel::split):
//   finish the part's previous sublayer end (all tokens normed, the residual
//   updated) -> this rank's share of the sublayer -> start the part's sublayer
//   end on the group's stream.
// With two parts, one part's sublayer end (reduce-scatter, add+norm,
// all-gather) runs while the other part computes: TokenWeave's schedule
// (parallel_elastic.md §3.4) with the CommStream as the communication stream.
// A second token half attends to the first half's keys and values, recomputed
// from the first half's input of the same sublayer (under ring attention:
// every rank's first half, going round the ring again).
#include "model/llama.h"

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace loom::model {

namespace {

parallel::TokenLayout narrowLayout(const parallel::TokenLayout& layout, int64_t first, int64_t count) {
  return {layout.positions.narrow(0, first, count), layout.documents.narrow(0, first, count)};
}

/// Positions [first, first + count) of one document.
parallel::TokenLayout causalLayout(int64_t first, int64_t count) {
  return {at::arange(first, first + count, at::kLong), at::zeros({count}, at::kLong)};
}

}  // namespace

at::Tensor LlamaImpl::forward(const at::Tensor& tokens, parallel::TensorParallel& tp) {
  requireTensorParallel(tp.size());
  return runTensorParallel(
      tokens, tp, /*token_halves=*/true,
      [this](BlockImpl& block, const at::Tensor& normed, const TpPart& part, const at::Tensor& prefix) {
        if (!prefix.defined()) return block.attn->forward(normed, rope_);
        return block.attn->forwardAfter(normed, causalLayout(part.first, part.count), prefix,
                                        causalLayout(0, part.first), rope_);
      });
}

at::Tensor LlamaImpl::forward(const at::Tensor& tokens, const parallel::TokenLayout& layout, dist::Communicator& group,
                              parallel::TensorParallel& tp) {
  requireTensorParallel(tp.size());
  // Under ring attention over several ranks a row splits into token halves
  // where every rank's first half is a causal prefix of its documents (zigzag
  // shares are): the first halves then attend only among themselves, round
  // the ring, and the second halves to all tokens, round the ring again.
  bool token_halves = true;
  if (group.size() > 1 && tp.split(tokens.size(0), tokens.size(1)).by_tokens) {
    token_halves = parallel::leadingTokensArePrefix(layout, tokens.size(1) / 2, group);
  }
  return runTensorParallel(
      tokens, tp, token_halves,
      [&](BlockImpl& block, const at::Tensor& normed, const TpPart& part, const at::Tensor& prefix) {
        if (!part.by_tokens) return block.attn->forward(normed, rope_, layout, group);
        const parallel::TokenLayout mine = narrowLayout(layout, part.first, part.count);
        if (!prefix.defined()) return block.attn->forward(normed, rope_, mine, group);
        return block.attn->forwardAfter(normed, mine, prefix, narrowLayout(layout, 0, part.first), rope_, &group);
      });
}

template <typename Attend>
at::Tensor LlamaImpl::runTensorParallel(const at::Tensor& tokens, parallel::TensorParallel& tp, bool token_halves,
                                        const Attend& attend) {
  const int64_t batch = tokens.size(0);
  const int64_t seq = tokens.size(1);
  const int64_t d = opts_.dim;
  const double eps = opts_.norm_eps;
  parallel::TokenSplit split = tp.split(batch, seq);
  if (split.by_tokens && !token_halves) split = {};
  const int axis = split.by_tokens ? 1 : 0;  // of tokens [batch, seq]
  const int64_t extent = tokens.size(axis);

  struct State : TpPart {
    at::Tensor normed;  ///< [tokens of the part, d], the next sublayer's input
    at::Tensor residual;
    std::optional<parallel::PendingAddNorm> pending;
    std::vector<int64_t> shape;  ///< of the part's activations: [sequences, tokens, d]
  };
  const at::Tensor x = tok_emb->forward(tokens);
  std::vector<State> parts(static_cast<size_t>(split.parts));
  for (int p = 0; p < split.parts; ++p) {
    State& part = parts[static_cast<size_t>(p)];
    part.first = extent * p / split.parts;
    part.count = extent * (p + 1) / split.parts - part.first;
    part.by_tokens = split.by_tokens;
    part.shape =
        split.by_tokens ? std::vector<int64_t>{batch, part.count, d} : std::vector<int64_t>{part.count, seq, d};
    const parallel::AddNormOutput entered = tp.enter(x.narrow(axis, part.first, part.count).reshape({-1, d}),
                                                     blocks->at<BlockImpl>(0).attn_norm->weight, eps);
    part.normed = entered.out;
    part.residual = entered.residual;
  }
  const size_t layers = blocks->size();
  for (size_t i = 0; i < layers; ++i) {
    BlockImpl& block = blocks->at<BlockImpl>(i);
    for (int sub = 0; sub < 2; ++sub) {
      const bool attention = sub == 0;
      const bool last = !attention && i + 1 == layers;
      const at::Tensor& gain = attention ? block.mlp_norm->weight
                               : last    ? norm->weight
                                         : blocks->at<BlockImpl>(i + 1).attn_norm->weight;
      for (size_t p = 0; p < parts.size(); ++p) {
        State& part = parts[p];
        if (part.pending) {
          const parallel::AddNormOutput done = part.pending->finish();
          part.normed = done.out;
          part.residual = done.residual;
        }
        const at::Tensor input = part.normed.view(part.shape);
        // A second token half attends to the first half's input of this sublayer.
        const at::Tensor prefix = split.by_tokens && p > 0 ? parts[0].normed.view(parts[0].shape) : at::Tensor();
        const at::Tensor partial = attention ? attend(block, input, part, prefix) : block.mlp->forward(input);
        part.pending = tp.startAddNorm(partial.reshape({-1, d}), part.residual, gain, eps, last);
      }
    }
  }
  std::vector<at::Tensor> outs;
  for (State& part : parts) outs.push_back(part.pending->finish().out.view(part.shape));
  return head->forward(outs.size() == 1 ? outs[0] : at::cat(outs, axis));
}

}  // namespace loom::model
