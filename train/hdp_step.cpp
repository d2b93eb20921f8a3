#include "train/hdp_step.h"

#include "parallel/ring_attention.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

namespace loom::train {
namespace {

// Forward + backward of one row of tokens; `targets` -1 where no loss is taken.
void runRow(model::LlamaImpl& model, const at::Tensor& inputs, const at::Tensor& targets,
            const parallel::TokenLayout& layout, dist::Communicator& group, const StepOptions& step,
            HdpRankResult& result) {
  const double exposed_before = step.tp != nullptr ? step.tp->stream().stats().exposed_ms : 0;
  const at::Tensor logits = step.tp != nullptr ? model.forward(inputs.unsqueeze(0), layout, group, *step.tp)
                                               : model.forward(inputs.unsqueeze(0), layout, group);
  if (step.tp != nullptr) result.tp_exposed_forward_ms += step.tp->stream().stats().exposed_ms - exposed_before;
  const at::Tensor rows = targets.ge(0).nonzero().squeeze(1);
  const at::Tensor loss =
      model::crossEntropySum(logits.squeeze(0).index_select(0, rows), targets.index_select(0, rows));
  loss.mul(step.loss_scale).backward();
  result.loss_sum += loss.item<double>();
  result.tokens += rows.numel();
  ++result.forwards;
}

// Sequences packed in one row: each its own document, positions restarting.
struct PackedRow {
  at::Tensor inputs, targets;  // [T]
  parallel::TokenLayout layout;
};

PackedRow pack(const std::vector<at::Tensor>& sequences) {
  std::vector<at::Tensor> inputs, targets, positions, documents;
  for (size_t d = 0; d < sequences.size(); ++d) {
    const int64_t length = sequences[d].numel() - 1;
    inputs.push_back(sequences[d].narrow(0, 0, length));
    targets.push_back(sequences[d].narrow(0, 1, length));
    positions.push_back(at::arange(length, at::kLong));
    documents.push_back(at::full({length}, static_cast<int64_t>(d), at::kLong));
  }
  return {at::cat(inputs), at::cat(targets), parallel::TokenLayout{at::cat(positions), at::cat(documents)}};
}

// This rank's zigzag share of a packed row over a group of `ranks`; padding
// has input 0, no target and document -1.
void runShare(model::LlamaImpl& model, const PackedRow& row, int ranks, int position, dist::Communicator& group,
              const StepOptions& step, HdpRankResult& result) {
  const int64_t length = row.inputs.numel();
  const at::Tensor index = at::tensor(parallel::zigzagIndices(length, ranks, position), at::kLong);
  const at::Tensor padding = index.ge(length);
  const at::Tensor clamped = index.clamp_max(length - 1);
  const parallel::TokenLayout layout{row.layout.positions.index_select(0, clamped),
                                     row.layout.documents.index_select(0, clamped).masked_fill_(padding, -1)};
  runRow(model, row.inputs.index_select(0, clamped).masked_fill(padding, 0),
         row.targets.index_select(0, clamped).masked_fill(padding, -1), layout, group, step, result);
}

void checkSequence(const at::Tensor& sequence, int64_t index) {
  LOOM_CHECK(sequence.dim() == 1 && sequence.numel() >= 2, "HDP: sequence ", index,
             " must hold at least 2 tokens (inputs and targets)");
}

// Counts a sequence once over the pool: on the first rank of its group.
void lead(int64_t sequence, HdpRankResult& result) {
  ++result.sequences;
  result.sequence_sum += static_cast<double>(sequence);
}

}  // namespace

HdpRankResult runHdpStep(model::LlamaImpl& model, const parallel::HdpPlan& plan,
                         const std::vector<at::Tensor>& sequences, parallel::GroupCache& groups,
                         const StepOptions& step) {
  LOOM_CHECK(plan.pool == groups.size(), "HDP: the plan is for ", plan.pool, " ranks but the pool has ",
             groups.size());
  const int rank = groups.rank();
  HdpRankResult result;
  // Groups in wave order (on every rank they come before its short sequences,
  // so no member waits); the short sequences of all waves afterwards, repacked
  // longest first into as few rows of at most C tokens as fit: a rank runs
  // them alone, so their waves need not be kept.
  std::vector<int64_t> short_ones;
  for (const parallel::Wave& wave : plan.waves) {
    for (const parallel::Placement& p : wave.placements) {
      if (rank < p.first_rank || rank >= p.first_rank + p.ranks) continue;
      checkSequence(sequences.at(static_cast<size_t>(p.sequence)), p.sequence);
      if (rank == p.first_rank) lead(p.sequence, result);
      if (p.ranks == 1) {
        short_ones.push_back(p.sequence);
      } else {
        runShare(model, pack({sequences[static_cast<size_t>(p.sequence)]}), p.ranks, rank - p.first_rank,
                 groups.group(p.first_rank, p.ranks), step, result);
      }
    }
  }
  const auto length = [&](int64_t i) { return sequences[static_cast<size_t>(i)].numel() - 1; };
  std::stable_sort(short_ones.begin(), short_ones.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  std::vector<std::vector<at::Tensor>> rows;
  std::vector<int64_t> row_tokens;
  for (int64_t i : short_ones) {
    size_t r = 0;
    while (r < rows.size() && row_tokens[r] + length(i) > plan.capacity) ++r;
    if (r == rows.size()) {
      rows.emplace_back();
      row_tokens.push_back(0);
    }
    rows[r].push_back(sequences[static_cast<size_t>(i)]);
    row_tokens[r] += length(i);
  }
  for (const auto& row : rows) {
    const PackedRow packed = pack(row);
    runRow(model, packed.inputs, packed.targets, packed.layout, groups.group(rank, 1), step, result);
  }
  return result;
}

HdpRankResult runStaticStep(model::LlamaImpl& model, const parallel::StaticPlan& plan,
                            const std::vector<at::Tensor>& sequences, parallel::GroupCache& groups,
                            const StepOptions& step) {
  LOOM_CHECK(plan.pool == groups.size(), "static mesh: the plan is for ", plan.pool, " ranks but the pool has ",
             groups.size());
  const int rank = groups.rank();
  HdpRankResult result;
  for (const parallel::StaticRow& row : plan.rows) {
    if (rank < row.first_rank || rank >= row.first_rank + plan.cp) continue;
    std::vector<at::Tensor> members;
    for (int64_t i : row.sequences) {
      checkSequence(sequences.at(static_cast<size_t>(i)), i);
      if (rank == row.first_rank) lead(i, result);
      members.push_back(sequences[static_cast<size_t>(i)]);
    }
    runShare(model, pack(members), plan.cp, rank - row.first_rank, groups.group(row.first_rank, plan.cp), step,
             result);
  }
  return result;
}

}  // namespace loom::train
