// The Trainer's elastic side (docs/elastic.md): the live state snapshots copy,
// restoring it over a new membership generation, recovery after a failure,
// replica layouts of elastic outer optimizers, and the metrics of steps
// rolled back.
#include "train/trainer.h"

#include "elastic/tensor_checksum.h"
#include "runtime/core/error.h"
#include "train/metrics.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

LiveState Trainer::liveState() {
  LiveState live;
  live.params = model_->namedParameters();
  live.optimizer = optimizer_->localState();
  if (outer_) {
    for (auto& named : outer_->snapshotState()) live.optimizer.push_back(std::move(named));
  }
  live.data_cursor = loader_->cursor();
  live.rng_state = generator_.get_state();
  return live;
}

void Trainer::applyGenerationChange(const elastic::GenerationChange& change) {
  const auto start = Clock::now();
  comm_ = &elastic_->main();
  world_comm_ = comm_;  // parallel.tp is 1 in elastic jobs (config::validate)
  if (opts_.job.outer.algorithm != OuterAlgorithm::kNone) {
    // Its exchange in flight ran over the retired generation; the snapshot holds what it sent.
    outer_.reset();
    // Survivors keep their replicas; joiners (-1) fill the smallest.
    at::Tensor mine = at::full({1}, static_cast<int64_t>(logical_replica_), at::kLong);
    at::Tensor all = at::empty({comm_->size()}, at::kLong);
    comm_->allGather(mine, all)->wait();
    std::vector<int> replica_of;
    for (int r = 0; r < comm_->size(); ++r) replica_of.push_back(static_cast<int>(all[r].item<int64_t>()));
    formElasticReplicas(assignJoiners(replica_of));
  } else {
    replica_comm_ = comm_;
  }
  const RestoredState state = session_->restore(change, model_->namedParameters(), *replica_comm_);
  {
    c10::NoGradGuard no_grad;
    const NamedTensors live = model_->namedParameters();
    LOOM_CHECK(live.size() == state.params.size(), "elastic: restored ", state.params.size(), " parameters, the model has ",
               live.size());
    for (size_t i = 0; i < live.size(); ++i) live[i].second.copy_(state.params[i].second);
  }
  generator_.set_state(state.rng_state);
  step_ = state.step;
  tokens_ = step_ * tokensPerStep();
  bindCommunicator();
  loader_->seek(state.data_cursor);
  NamedTensors inner;
  NamedTensors outer;
  for (const auto& named : state.optimizer) (named.first.rfind("outer.", 0) == 0 ? outer : inner).push_back(named);
  optimizer_->loadState(inner, step_);
  if (opts_.job.outer.algorithm != OuterAlgorithm::kNone) {
    makeOuterOptimizer();
    outer_->loadState(outer);  // restarts an exchange that was in flight at this step
  }
  session_->captureCommitted(step_, liveState());
  session_->awaitReplication();
  const double restore_ms = msSince(start);
  std::string lost;
  for (int id : change.lost) lost += (lost.empty() ? "" : ", ") + std::to_string(id);
  std::string joined;
  for (int id : change.joined) joined += (joined.empty() ? "" : ", ") + std::to_string(id);
  log_.info("elastic: continuing at step ", step_ + 1, " in ", change.current.describe(), " (rank ", comm_->rank(),
            " of ", comm_->size(), ")", lost.empty() ? "" : "; lost worker(s) " + lost,
            joined.empty() || change.previous.members.empty() ? "" : "; joined worker(s) " + joined,
            "; rebuild ", change.rebuild_ms, " ms, restore ", restore_ms, " ms; state ",
            elastic::checksumHex(state.state_hash),
            outer_ ? c10::str(" equal on the ", replica_comm_->size(), " member(s) of replica ", replica_, " of ",
                              replicas_)
                   : c10::str(" equal on all ", comm_->size(), " members"));
  last_change_ = nlohmann::json{{"event", change.lost.empty() ? "admission" : "recovery"},
                                {"step", step_},
                                {"generation", change.current.generation},
                                {"world", comm_->size()},
                                {"lost", change.lost},
                                {"joined", change.joined},
                                {"rebuild_ms", change.rebuild_ms},
                                {"restore_ms", restore_ms},
                                {"state_hash", elastic::checksumHex(state.state_hash)},
                                {"time", unixSeconds()}}
                     .dump();
}

void Trainer::recoverFromFailure(const std::exception& cause) {
  const std::string why = errorMessage(cause);
  elastic::GenerationChange change;
  try {
    change = elastic_->recover(why);
  } catch (const elastic::QuorumLostError& e) {
    LOOM_THROW(PeerLostError, e.what(), "; stopping without a new checkpoint (the last one in ",
               opts_.job.train.out_dir, "/checkpoints is intact)");
  }
  try {
    applyGenerationChange(change);
  } catch (const UnrecoverableStateError& e) {
    LOOM_THROW(PeerLostError, e.what(), "; stopping (the last checkpoint in ", opts_.job.train.out_dir,
               "/checkpoints is intact)");
  }
  if (change.below_minimum) {
    saveCheckpoint();
    LOOM_THROW(PeerLostError, "elastic: ", comm_->size(), " worker(s) left, below elastic.min_ranks (",
               opts_.job.elastic.min_ranks, "): stopped after a durable checkpoint of step ", step_, " in ",
               opts_.job.train.out_dir, "/checkpoints; restart the job to continue");
  }
}

void Trainer::formElasticReplicas(const std::vector<int>& replica_of) {
  const ReplicaLayout layout = replicaLayout(replica_of, comm_->rank());
  replicas_ = layout.replicas;
  replica_ = layout.replica;
  replica_sizes_ = layout.sizes;
  logical_replica_ = layout.logical;
  // Every rank splits its replica first, then leaders their group: the same order everywhere.
  replica_comm_ = &elastic_->split(layout.members);
  outer_comm_ = layout.leader() ? &elastic_->split(layout.leaders) : nullptr;
}

void Trainer::forgetStepsAfter(int64_t step, RunSummary& summary) {
  const auto kept = static_cast<size_t>(std::max<int64_t>(0, step - summary.first_step));
  if (summary.losses.size() > kept) summary.losses.resize(kept);
  while (!summary.val_losses.empty() && summary.val_losses.back().first > step) summary.val_losses.pop_back();
  // The lead may have changed, and lines of rolled-back steps must go.
  metrics_.reset();
  if (comm_->rank() == 0) {
    metrics_ = std::make_unique<MetricsLog>((std::filesystem::path(opts_.job.train.out_dir) / "metrics.jsonl").string(),
                                            step);
    metrics_->append(last_change_);
  }
}

}  // namespace loom::train
