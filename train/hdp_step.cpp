#include "train/hdp_step.h"

#include "parallel/ring_attention.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

namespace loom::train {
namespace {

// Forward + backward of one row of tokens; `targets` -1 where no loss is taken.
void runRow(model::LlamaImpl& model, const at::Tensor& inputs, const at::Tensor& targets,
            const parallel::TokenLayout& layout, dist::Communicator& group, HdpRankResult& result) {
  const at::Tensor logits = model.forward(inputs.unsqueeze(0), layout, group);
  const at::Tensor rows = targets.ge(0).nonzero().squeeze(1);
  const at::Tensor loss =
      model::crossEntropySum(logits.squeeze(0).index_select(0, rows), targets.index_select(0, rows));
  loss.backward();
  result.loss_sum += loss.item<double>();
  result.tokens += rows.numel();
  ++result.forwards;
}

// This rank's zigzag share of a sequence over a group of `ranks`; padding has
// input 0, no target and document -1.
void runShare(model::LlamaImpl& model, const at::Tensor& sequence, int ranks, int position, dist::Communicator& group,
              HdpRankResult& result) {
  const int64_t length = sequence.numel() - 1;
  const at::Tensor index = at::tensor(parallel::zigzagIndices(length, ranks, position), at::kLong);
  const at::Tensor padding = index.ge(length);
  const at::Tensor clamped = index.clamp_max(length - 1);
  const parallel::TokenLayout layout{clamped, at::zeros_like(clamped).masked_fill_(padding, -1)};
  runRow(model, sequence.index_select(0, clamped).masked_fill(padding, 0),
         sequence.index_select(0, clamped + 1).masked_fill(padding, -1), layout, group, result);
}

// Short sequences packed in one row: positions restart per sequence and each is its own document.
void runPacked(model::LlamaImpl& model, const std::vector<at::Tensor>& packed, dist::Communicator& self,
               HdpRankResult& result) {
  std::vector<at::Tensor> inputs, targets, positions, documents;
  for (size_t d = 0; d < packed.size(); ++d) {
    const int64_t length = packed[d].numel() - 1;
    inputs.push_back(packed[d].narrow(0, 0, length));
    targets.push_back(packed[d].narrow(0, 1, length));
    positions.push_back(at::arange(length, at::kLong));
    documents.push_back(at::full({length}, static_cast<int64_t>(d), at::kLong));
  }
  runRow(model, at::cat(inputs), at::cat(targets), parallel::TokenLayout{at::cat(positions), at::cat(documents)}, self,
         result);
}

}  // namespace

HdpRankResult runHdpStep(model::LlamaImpl& model, const parallel::HdpPlan& plan,
                         const std::vector<at::Tensor>& sequences, parallel::GroupCache& groups) {
  LOOM_CHECK(plan.pool == groups.size(), "HDP: the plan is for ", plan.pool, " ranks but the pool has ",
             groups.size());
  const int rank = groups.rank();
  HdpRankResult result;
  for (const parallel::Wave& wave : plan.waves) {
    std::vector<at::Tensor> packed;
    for (const parallel::Placement& p : wave.placements) {
      if (rank < p.first_rank || rank >= p.first_rank + p.ranks) continue;
      const at::Tensor& sequence = sequences.at(static_cast<size_t>(p.sequence));
      LOOM_CHECK(sequence.dim() == 1 && sequence.numel() >= 2, "HDP: sequence ", p.sequence,
                 " must hold at least 2 tokens (inputs and targets)");
      if (p.ranks == 1) {
        packed.push_back(sequence);
      } else {
        runShare(model, sequence, p.ranks, rank - p.first_rank, groups.group(p.first_rank, p.ranks), result);
      }
    }
    if (!packed.empty()) runPacked(model, packed, groups.group(rank, 1), result);
  }
  return result;
}

}  // namespace loom::train
