// The tensor-parallel forward of LlamaImpl (docs/tensor_parallel.md).
//
// Per sublayer and part (half of the micro-batch's sequences when the
// tensor-parallel group splits it, else all of them):
//   finish the part's previous sublayer end (all tokens normed, the residual
//   updated) -> this rank's share of the sublayer -> start the part's sublayer
//   end on the group's stream.
// With two parts, one part's sublayer end (reduce-scatter, add+norm,
// all-gather) runs while the other part computes: TokenWeave's schedule
// (parallel_elastic.md §3.4) with the CommStream as the communication stream.
#include "model/llama.h"

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace loom::model {

at::Tensor LlamaImpl::forward(const at::Tensor& tokens, parallel::TensorParallel& tp) {
  requireTensorParallel(tp.size());
  return runTensorParallel(tokens, tp, /*allow_split=*/true,
                           [this](BlockImpl& block, const at::Tensor& normed, int64_t, int64_t) {
                             return block.attn->forward(normed, rope_);
                           });
}

at::Tensor LlamaImpl::forward(const at::Tensor& tokens, const parallel::TokenLayout& layout, dist::Communicator& group,
                              parallel::TensorParallel& tp) {
  requireTensorParallel(tp.size());
  // Ring attention covers the whole batch's layout: it runs as one part.
  return runTensorParallel(tokens, tp, /*allow_split=*/false,
                           [&](BlockImpl& block, const at::Tensor& normed, int64_t, int64_t) {
                             return block.attn->forward(normed, rope_, layout, group);
                           });
}

template <typename Attend>
at::Tensor LlamaImpl::runTensorParallel(const at::Tensor& tokens, parallel::TensorParallel& tp, bool allow_split,
                                        const Attend& attend) {
  const int64_t batch = tokens.size(0);
  const int64_t seq = tokens.size(1);
  const int64_t d = opts_.dim;
  const double eps = opts_.norm_eps;
  const int parts = allow_split ? tp.parts(batch, seq) : 1;

  struct Part {
    int64_t first = 0;  ///< first sequence of the micro-batch
    int64_t count = 0;  ///< sequences
    at::Tensor normed;  ///< [count * seq, d], all tokens, the next sublayer's input
    at::Tensor residual;
    std::optional<parallel::PendingAddNorm> pending;
  };
  const at::Tensor x = tok_emb->forward(tokens);
  std::vector<Part> state(parts);
  for (int p = 0; p < parts; ++p) {
    Part& part = state[p];
    part.first = batch * p / parts;
    part.count = batch * (p + 1) / parts - part.first;
    const parallel::AddNormOutput entered =
        tp.enter(x.narrow(0, part.first, part.count).reshape({-1, d}), blocks->at<BlockImpl>(0).attn_norm->weight, eps);
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
      for (Part& part : state) {
        if (part.pending) {
          const parallel::AddNormOutput done = part.pending->finish();
          part.normed = done.out;
          part.residual = done.residual;
        }
        const at::Tensor input = part.normed.view({part.count, seq, d});
        const at::Tensor partial = attention ? attend(block, input, part.first, part.count) : block.mlp->forward(input);
        part.pending = tp.startAddNorm(partial.reshape({-1, d}), part.residual, gain, eps, last);
      }
    }
  }
  std::vector<at::Tensor> outs;
  for (Part& part : state) outs.push_back(part.pending->finish().out.view({part.count, seq, d}));
  return head->forward(parts == 1 ? outs[0] : at::cat(outs, 0));
}

}  // namespace loom::model
