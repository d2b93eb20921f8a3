#include "launcher/elastic_agent.h"

#include "launcher/store_ops.h"
#include "runtime/core/error.h"
#include "runtime/dist/elastic_keys.h"

#include <algorithm>
#include <csignal>

namespace loom::launcher {
namespace {

namespace keys = dist::elastic_keys;

/// The longest monitor tick in elastic mode: a declared-dead worker is killed within it.
constexpr std::chrono::milliseconds kMaxElasticTick{50};

std::string seconds(std::chrono::milliseconds duration) {
  return c10::str(static_cast<double>(duration.count()) / 1000.0, " s");
}

}  // namespace

bool isLoss(const ExitStatus& status, bool declared_dead) {
  if (declared_dead || status.signaled) return true;
  return status.code != static_cast<int>(ExitCode::kOk) && status.code != static_cast<int>(ExitCode::kBadInput) &&
         status.code != static_cast<int>(ExitCode::kPeerLost);
}

std::optional<int> survivorsExitCode(const std::vector<ExitStatus>& survivors) {
  if (survivors.empty()) return std::nullopt;
  for (const ExitStatus& status : survivors) {
    if (!status.success()) return status.shellCode();
  }
  return 0;
}

ElasticMonitor::ElasticMonitor(Context context) : ctx_(std::move(context)) {}

std::string ElasticMonitor::who(const WorkerGroup& group, size_t index) const {
  return c10::str("rank ", group.launch(index).rank, " (id ", slots_[index].id, ", pid ", group.process(index).pid(),
                  ")");
}

bool ElasticMonitor::finished() {
  return ctx_.store.check({keys::kFinished});
}

int ElasticMonitor::run(WorkerGroup& group, const std::vector<int>& ids) {
  LOOM_CHECK(ids.size() == group.size(), "elastic ids (", ids.size(), ") != workers (", group.size(), ")");
  for (int id : ids) {
    Slot slot;
    slot.id = id;
    slots_.push_back(slot);
  }
  const auto tick = std::min(ctx_.opts.monitor_interval, kMaxElasticTick);
  auto next_check = Clock::now();
  bool reported_done = false;
  while (true) {
    const auto wait = std::max(Clock::duration::zero(), next_check - Clock::now());
    if (const int signal =
            group.waitForEvents(std::chrono::duration_cast<std::chrono::milliseconds>(wait), ctx_.signals)) {
      ctx_.log.info("Received ", signalName(signal), " death signal, shutting down workers");
      stop_signal_ = signal;
      ctx_.coordinator.report(ctx_.stop_outcome(signal));
      stopAll(group);
      break;
    }
    handleExits(group);
    if (group.allExited()) {
      if (!reported_done) {
        ctx_.coordinator.reportSuccess();  // in elastic mode: this node is done
        reported_done = true;
      }
      if (ctx_.coordinator.everyNodeSucceeded()) break;
    }
    if (Clock::now() < next_check) continue;
    if (const auto outcome = ctx_.coordinator.reported()) {
      if (!group.allExited()) {
        const int signal = outcome->kind == AttemptOutcome::Kind::kStopped ? outcome->signal : SIGTERM;
        ctx_.log.info("node ", outcome->node_rank, " (", outcome->host, ") reported ", signalName(signal),
                      ": stopping this node's workers");
        stop_signal_ = signal;
        stopAll(group);
      }
      break;
    }
    evictDeclaredDead(group);
    releaseJoiners(group);
    next_check = Clock::now() + tick;
  }
  group.drainOutput(std::chrono::seconds(1));
  return conclude(group);
}

void ElasticMonitor::handleExits(WorkerGroup& group) {
  for (size_t i : group.reapExited()) handleExit(group, i);
}

void ElasticMonitor::handleExit(WorkerGroup& group, size_t index) {
  Slot& slot = slots_[index];
  slot.ended = true;
  exit_order_.push_back(index);
  const ExitStatus& status = *group.process(index).status();
  if (status.success() && !slot.evicted) return;
  std::string reason = slot.evict_reason;
  bool declared = slot.evicted;
  if (!slot.evicted) {
    // Report the death before anything else: the survivors' watchdogs wait for it.
    const std::string ours =
        c10::str("rank ", group.launch(index).rank, " (pid ", group.process(index).pid(), ") ", describeExit(status));
    reason = setTextIfAbsent(ctx_.store, keys::dead(slot.id), ours);
    declared = reason != ours;  // its peers had declared it dead already, and counted it
    if (!declared) ctx_.store.add(keys::kFailures, 1);
  }
  slot.lost = isLoss(status, declared);
  if (!slot.lost) {
    ctx_.log.info(who(group, index), " ", describeExit(status), ": it stopped by itself (reported to its peers)");
    return;
  }
  if (!slot.evicted) {
    ctx_.log.info(who(group, index), " ", describeExit(status), ": lost; ",
                  declared ? "its peers had declared it dead: " + reason : "reported to its peers");
  }
  ElasticLoss loss{slot.id, reason, slot.evicted, ctx_.describe_failure(group, index)};
  if (slot.evicted && loss.failure.error_message.empty()) {
    loss.failure.error_message = "evicted by its peers: " + reason;
  }
  lost_.push_back(std::move(loss));
  replace(group, index);
}

void ElasticMonitor::replace(WorkerGroup& group, size_t lost_index) {
  if (ctx_.elastic.policy != ElasticPolicy::kReplace) return;
  const std::string lost = c10::str("rank ", group.launch(lost_index).rank, " (id ", slots_[lost_index].id, ")");
  const int budget = ctx_.opts.max_restarts;
  if (finished()) {
    ctx_.log.info("elastic: not replacing ", lost, ": training has finished");
    return;
  }
  if (replacements_used_ >= budget) {
    ctx_.log.info("elastic: no replacement for ", lost, ": 0/", budget,
                  " replacements left (--max-restarts); continuing with the survivors");
    return;
  }
  const int id = ctx_.initial_world_size + static_cast<int>(ctx_.store.add(keys::kNextId, 1)) - 1;
  const int local_rank = group.launch(lost_index).local_rank;
  try {
    const size_t index = group.add(ctx_.make_launch(local_rank, id, /*joiner=*/true));
    ++replacements_used_;
    Slot slot;
    slot.id = id;
    slot.joiner = true;
    slots_.push_back(slot);
    replacement_ids_.push_back(id);
    ctx_.log.info("elastic: replacing ", lost, " with id ", id, " (pid ", group.process(index).pid(), ") as rank ",
                  group.launch(index).rank, "; ", budget - replacements_used_, "/", budget, " replacements left");
  } catch (const InputError& e) {
    ctx_.log.info("elastic: cannot start a replacement for ", lost, ": ", errorMessage(e),
                  "; continuing with the survivors");
  }
}

void ElasticMonitor::evictDeclaredDead(WorkerGroup& group) {
  for (size_t i = 0; i < group.size(); ++i) {
    Slot& slot = slots_[i];
    if (!group.process(i).running() || slot.evicted || !ctx_.store.check({keys::dead(slot.id)})) continue;
    slot.evicted = true;
    slot.evict_reason = getText(ctx_.store, keys::dead(slot.id));
    ctx_.log.info(who(group, i), " evicted by its peers: ", slot.evict_reason, "; killing it");
    // SIGKILL ends a stopped process too; SIGCONT lets the kernel deliver it at once.
    group.process(i).signalGroup(SIGKILL);
    group.process(i).signalGroup(SIGCONT);
  }
}

void ElasticMonitor::releaseJoiners(WorkerGroup& group) {
  bool joiners = false;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!group.process(i).running()) continue;
    if (!slots_[i].joiner) return;  // an initial worker still runs: the job is not over here
    joiners = true;
  }
  if (!joiners || !finished()) return;
  if (!release_deadline_) {
    release_deadline_ = Clock::now() + ctx_.opts.grace_period;
    ctx_.log.info("elastic: training finished; replacement(s) still running get ", seconds(ctx_.opts.grace_period),
                  " (--grace-period) to exit");
    return;
  }
  if (Clock::now() < *release_deadline_) return;
  ctx_.log.info("elastic: replacement(s) still running after the grace period: stopping them");
  for (size_t i = 0; i < group.size(); ++i) {
    if (group.process(i).running()) slots_[i].released = true;
  }
  if (const int signal = group.stop(ctx_.opts.grace_period, ctx_.signals)) {
    stop_signal_ = signal;
    ctx_.coordinator.report(ctx_.stop_outcome(signal));
  }
  for (size_t i = 0; i < group.size(); ++i) {
    if (!slots_[i].ended) {
      slots_[i].ended = true;
      exit_order_.push_back(i);
    }
  }
}

int ElasticMonitor::stopAll(WorkerGroup& group) {
  const int signal = group.stop(ctx_.opts.grace_period, ctx_.signals);
  for (size_t i = 0; i < group.size(); ++i) {
    if (!slots_[i].ended) {
      slots_[i].ended = true;
      exit_order_.push_back(i);
    }
  }
  return signal;
}

int ElasticMonitor::conclude(const WorkerGroup& group) {
  std::vector<ExitStatus> survivors;
  for (size_t i : exit_order_) {
    if (!slots_[i].lost && !slots_[i].released) survivors.push_back(*group.process(i).status());
  }
  const std::optional<int> survivors_code = survivorsExitCode(survivors);
  int code = 0;
  if (stop_signal_ != 0) {
    code = survivors_code == 0 ? 0 : 128 + stop_signal_;
  } else if (survivors_code) {
    code = *survivors_code;
  } else if (!lost_.empty()) {
    std::vector<WorkerFailure> others;
    for (size_t i = 1; i < lost_.size(); ++i) others.push_back(lost_[i].failure);
    ctx_.log.block(formatFailureSummary(ctx_.program_name, lost_.front().failure, others));
    code = lost_.front().failure.status.shellCode();
  }
  if (!lost_.empty() || !replacement_ids_.empty()) {
    std::string text =
        c10::str("elastic: ", lost_.size(), " worker(s) lost", code == 0 ? " and recovered from" : "", ": ");
    for (size_t i = 0; i < lost_.size(); ++i) {
      const ElasticLoss& loss = lost_[i];
      text += c10::str(i == 0 ? "" : "; ", "rank ", loss.failure.rank, " (id ", loss.elastic_id, ") ",
                       loss.evicted ? "evicted by its peers (" + loss.reason + ")" : describeExit(loss.failure.status),
                       " at ", loss.failure.time);
    }
    text += "; replacements started: ";
    if (replacement_ids_.empty()) text += "none";
    for (size_t i = 0; i < replacement_ids_.size(); ++i) {
      text += c10::str(i == 0 ? "id " : ", id ", replacement_ids_[i]);
    }
    ctx_.log.info(text);
  }
  ctx_.log.info("elastic: all workers of this node exited: exit code ", code);
  return code;
}

}  // namespace loom::launcher
