// The Trainer's document mode (context.mode STATIC or HDP; docs/hdp.md): each
// step's documents planned over the current world and run by this rank.
#include "train/trainer.h"

#include "parallel/hdp_plan.h"
#include "parallel/static_plan.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

namespace loom::train {

int64_t Trainer::tokensPerStep() const {
  const JobOptions& job = opts_.job;
  return documents_ ? job.context.tokens_per_step : job.train.global_batch * job.data.seq_len;
}

HdpRankResult Trainer::documentStep() {
  const ContextOptions& context = opts_.job.context;
  std::vector<at::Tensor> sequences;
  std::vector<int64_t> lengths;
  for (const data::Document& d : documents_->step(step_)) {
    sequences.push_back(documents_->tokens(d));
    lengths.push_back(d.length);
  }
  // Planned over the current world: after a lost rank, over the survivors.
  const StepOptions step{1.0 / static_cast<double>(context.tokens_per_step), tensor_parallel_.get()};
  if (context.mode == ContextMode::kHdp) {
    const parallel::HdpOptions opts{comm_->size(), context.capacity, 1.0,
                                    12.0 * static_cast<double>(opts_.job.model.dim)};
    const parallel::HdpPlan plan = parallel::planHdp(lengths, opts);
    if (!plans_agreed_) {
      // Every rank plans alone: check once per world that they all got the same plan.
      at::Tensor mine = at::full({1}, static_cast<int64_t>(plan.hash()), at::kLong);
      at::Tensor all = at::empty({comm_->size()}, at::kLong);
      comm_->allGather(mine, all)->wait();
      for (int r = 0; r < comm_->size(); ++r) {
        LOOM_CHECK(all[r].item<int64_t>() == mine.item<int64_t>(), "HDP: rank ", comm_->rank(), " planned step ",
                   step_ + 1, " with hash ", mine.item<int64_t>(), " but rank ", r, " with ", all[r].item<int64_t>(),
                   ": the ranks do not see the same documents (different data.train_path or train.seed?)");
      }
      plans_agreed_ = true;
    }
    return runHdpStep(*model_, plan, sequences, *groups_, step);
  }
  const int cp = context.cp > 0 ? static_cast<int>(context.cp) : parallel::staticCp(context.max_tokens, context.capacity);
  return runStaticStep(*model_, parallel::planStatic(lengths, comm_->size(), cp, context.capacity), sequences,
                       *groups_, step);
}

}  // namespace loom::train
