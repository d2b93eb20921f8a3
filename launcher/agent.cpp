#include "launcher/agent.h"

#include "launcher/elastic_agent.h"
#include "launcher/node_rendezvous.h"
#include "launcher/worker_env.h"
#include "runtime/core/error.h"
#include "runtime/dist/elastic_keys.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <algorithm>

namespace loom::launcher {
namespace {

using Clock = std::chrono::steady_clock;

/// stderr lines kept per worker for the failure summary, and their longest shown length.
constexpr size_t kTailLines = 10;
constexpr size_t kTailLineChars = 1000;
/// How long node 0 waits, beyond the grace period, for the other nodes to leave.
constexpr std::chrono::seconds kLeaveMargin{60};

bool sameWorker(const WorkerFailure& a, const WorkerFailure& b) {
  return a.rank == b.rank && a.node_rank == b.node_rank && a.pid == b.pid;
}

std::string programName(const std::string& program) {
  const size_t slash = program.rfind('/');
  return slash == std::string::npos ? program : program.substr(slash + 1);
}

}  // namespace

Agent::Agent(LaunchOptions opts)
    : opts_(std::move(opts)),
      log_(opts_.multiNode() ? "loom-launch[node " + std::to_string(opts_.node_rank) + "]: " : "loom-launch: "),
      host_(hostName()) {}

int Agent::run() {
  signals_.emplace();  // before the store starts its threads
  log_.block(describeLaunchOptions(opts_));
  try {
    return runJob();
  } catch (const StopRequested& stop) {
    log_.info("received ", signalName(stop.signal()), " before workers started: exiting");
    return 128 + stop.signal();
  }
}

int Agent::runJob() {
  LaunchStore launch_store = openLaunchStore(opts_, log_);
  store_endpoint_ = launch_store.endpoint;
  base_store_ = launch_store.store;
  job_store_ = c10::make_intrusive<c10d::PrefixStore>("loom-launch/" + opts_.run_id, base_store_);
  const auto check_interrupt = [this] {
    if (const int signal = signals_->takeStopSignal()) throw StopRequested(signal);
  };
  membership_ = joinRendezvous(*job_store_, opts_, host_, check_interrupt, log_);
  // A config the workers could not load stops the job here (InputError: exit code 2).
  elastic_ = elasticModeOf(opts_.args, membership_.group_world_size * opts_.nproc_per_node);
  if (elastic_) log_.info(describeElasticMode(*elastic_));
  coordinator_.emplace(*job_store_, membership_, opts_.node_rank, opts_.rdzv_timeout);
  run_dir_.emplace(opts_.log_dir, opts_.run_id);
  if (run_dir_->keepsLogs()) {
    log_.info("worker logs: ", run_dir_->path(), "/attempt_<k>/rank_<N>/{stdout.log,stderr.log}");
  }
  base_env_ = currentEnvironment();
  omp_threads_ = defaultOmpThreads(usableCores(), opts_.nproc_per_node);
  if (!findVariable(base_env_, "OMP_NUM_THREADS")) {
    log_.info("OMP_NUM_THREADS is unset: each worker gets OMP_NUM_THREADS=", omp_threads_, " (", usableCores(),
              " cores / ", opts_.nproc_per_node, " workers); set it to choose another value");
  }

  for (int attempt = 0;; ++attempt) {
    try {
      coordinator_->enterAttempt(attempt, [&] {
        if (const int signal = signals_->takeStopSignal()) {
          coordinator_->report(stopOutcome(signal));
          throw StopRequested(signal);
        }
      });
    } catch (const StopRequested& stop) {
      log_.info("stopped by ", signalName(stop.signal()), " before attempt ", attempt, " started");
      return finish(128 + stop.signal());
    } catch (const PeerLostError&) {
      throw;
    } catch (const std::exception& e) {
      throwStoreLost(attempt, e);
    }
    if (elastic_) return finish(runElasticAttempt(attempt));
    if (const std::optional<int> code = conclude(attempt, runAttempt(attempt))) return finish(*code);
  }
}

std::optional<int> Agent::conclude(int attempt, const AttemptResult& result) {
  if (!result.outcome) {
    log_.info("attempt ", attempt, ": all ", membership_.group_world_size * opts_.nproc_per_node,
              " workers finished successfully");
    return 0;
  }
  const AttemptOutcome& outcome = *result.outcome;
  if (outcome.kind == AttemptOutcome::Kind::kStopped) {
    const int code = result.local_all_succeeded ? 0 : 128 + outcome.signal;
    log_.info("job stopped by ", signalName(outcome.signal), " on node ", outcome.node_rank, " (", outcome.host,
              "); this node's workers ", result.local_all_succeeded ? "all exited 0" : "did not all exit 0",
              ": exit code ", code);
    return code;
  }
  const WorkerFailure& root = outcome.failure;
  const bool bad_input = !root.status.signaled && root.status.code == static_cast<int>(ExitCode::kBadInput);
  if (!bad_input && result.stop_signal == 0 && attempt < opts_.max_restarts) {
    log_.info("Worker group FAILED. ", opts_.max_restarts - attempt, "/", opts_.max_restarts,
              " attempts left; will restart worker group (root cause: rank ", root.rank, " on ", root.host, " ",
              describeExit(root.status), ")");
    return std::nullopt;
  }
  std::vector<WorkerFailure> others;
  for (const auto& f : result.local_failures) {
    if (!sameWorker(f, root)) others.push_back(f);
  }
  log_.block(formatFailureSummary(programName(opts_.program), root, others));
  if (bad_input) {
    log_.info("rank ", root.rank, " exited with code 2 (bad config or input): not restarting; fix the input");
  } else if (result.stop_signal != 0) {
    log_.info("received ", signalName(result.stop_signal), " during the failed attempt: not restarting");
    coordinator_->reportStopAhead(stopOutcome(result.stop_signal));
  } else if (opts_.max_restarts > 0) {
    log_.info("Worker group FAILED. 0/", opts_.max_restarts, " attempts left: giving up");
  }
  return root.status.shellCode();
}

void Agent::logStarted(const WorkerGroup& group, int attempt) const {
  std::string started;
  for (size_t i = 0; i < group.size(); ++i) {
    started += (i == 0 ? "" : ", ") + std::string("rank ") + std::to_string(group.launch(i).rank) + " (pid " +
               std::to_string(group.process(i).pid()) + ")";
  }
  log_.info("attempt ", attempt, ": started ", group.size(), " worker(s): ", started,
            "; MASTER_ADDR=", store_endpoint_.host, " MASTER_PORT=", store_endpoint_.port);
}

Agent::AttemptResult Agent::runAttempt(int attempt) {
  WorkerGroup group(opts_.program, opts_.args, makeLaunches(attempt), log_);
  logStarted(group, attempt);
  try {
    return monitor(group, attempt);
  } catch (const std::exception& e) {
    // Only the store can fail here (a worker's failure is data, not an exception).
    group.stop(opts_.grace_period, *signals_);
    throwStoreLost(attempt, e);
  }
}

int Agent::runElasticAttempt(int attempt) {
  const int world_size = membership_.group_world_size * opts_.nproc_per_node;
  std::vector<WorkerLaunch> launches;
  std::vector<int> ids;
  for (int local_rank = 0; local_rank < opts_.nproc_per_node; ++local_rank) {
    const int rank = membership_.group_rank * opts_.nproc_per_node + local_rank;
    launches.push_back(makeLaunch(attempt, local_rank, rank, /*joiner=*/false));
    ids.push_back(rank);
  }
  WorkerGroup group(opts_.program, opts_.args, std::move(launches), log_);
  logStarted(group, attempt);
  const auto elastic_store = c10::make_intrusive<c10d::PrefixStore>(dist::elastic_keys::root(attempt), base_store_);
  ElasticMonitor monitor(ElasticMonitor::Context{
      opts_, elastic_->options, log_, *signals_, *coordinator_, *elastic_store, world_size, programName(opts_.program),
      [this, attempt](int local_rank, int id, bool joiner) { return makeLaunch(attempt, local_rank, id, joiner); },
      [this](const WorkerGroup& g, size_t index) { return describeFailure(g, index); },
      [this](int signal) { return stopOutcome(signal); }});
  try {
    return monitor.run(group, ids);
  } catch (const std::exception& e) {
    group.stop(opts_.grace_period, *signals_);
    throwStoreLost(attempt, e);
  }
}

void Agent::throwStoreLost(int attempt, const std::exception& e) const {
  LOOM_THROW(PeerLostError, "attempt ", attempt, ": lost the rendezvous store at ", store_endpoint_.str(),
             " (node 0's launcher hosts it: did it exit?): ", errorMessage(e));
}

Agent::AttemptResult Agent::monitor(WorkerGroup& group, int attempt) {
  AttemptResult result;
  bool reported_success = false;
  auto next_check = Clock::now();
  while (!result.outcome) {
    const auto wait = std::max(Clock::duration::zero(), next_check - Clock::now());
    const int signal = group.waitForEvents(std::chrono::duration_cast<std::chrono::milliseconds>(wait), *signals_);
    if (signal != 0) {
      log_.info("Received ", signalName(signal), " death signal, shutting down workers");
      result.stop_signal = signal;
      result.outcome = coordinator_->report(stopOutcome(signal));
      break;
    }
    for (size_t i : group.reapExited()) {
      const ExitStatus& status = *group.process(i).status();
      if (status.success()) continue;
      log_.info("attempt ", attempt, ": rank ", group.launch(i).rank, " (pid ", group.process(i).pid(), ") ",
                describeExit(status));
      result.local_failures.push_back(describeFailure(group, i));
    }
    if (!result.local_failures.empty()) {
      std::stable_sort(result.local_failures.begin(), result.local_failures.end(), observedBefore);
      AttemptOutcome failed;
      failed.failure = result.local_failures.front();
      failed.node_rank = opts_.node_rank;
      failed.host = host_;
      result.outcome = coordinator_->report(failed);
      break;
    }
    if (group.allExited() && !reported_success) {
      coordinator_->reportSuccess();
      reported_success = true;
      next_check = Clock::now();
    }
    if (Clock::now() >= next_check) {
      if ((result.outcome = coordinator_->reported())) {
        const AttemptOutcome& o = *result.outcome;
        log_.info("node ", o.node_rank, " (", o.host, ") reported ",
                  o.kind == AttemptOutcome::Kind::kStopped
                      ? signalName(o.signal)
                      : "rank " + std::to_string(o.failure.rank) + " " + describeExit(o.failure.status),
                  ": stopping this node's workers");
        break;
      }
      if (reported_success && coordinator_->everyNodeSucceeded()) break;
      next_check = Clock::now() + opts_.monitor_interval;
    }
  }
  if (result.outcome) {
    const int signal = group.stop(opts_.grace_period, *signals_);
    if (result.stop_signal == 0) result.stop_signal = signal;
  }
  group.drainOutput(std::chrono::seconds(1));
  result.local_all_succeeded = group.allSucceeded();
  return result;
}

std::vector<WorkerLaunch> Agent::makeLaunches(int attempt) const {
  std::vector<WorkerLaunch> launches;
  for (int local_rank = 0; local_rank < opts_.nproc_per_node; ++local_rank) {
    launches.push_back(makeLaunch(attempt, local_rank, std::nullopt, /*joiner=*/false));
  }
  return launches;
}

WorkerLaunch Agent::makeLaunch(int attempt, int local_rank, std::optional<int> elastic_id, bool joiner) const {
  const int nproc = opts_.nproc_per_node;
  WorkerIdentity id;
  id.local_rank = local_rank;
  id.rank = membership_.group_rank * nproc + local_rank;
  id.world_size = membership_.group_world_size * nproc;
  id.local_world_size = nproc;
  id.group_rank = membership_.group_rank;
  id.group_world_size = membership_.group_world_size;
  id.restart_count = attempt;
  id.max_restarts = opts_.max_restarts;
  id.run_id = opts_.run_id;
  id.master_addr = store_endpoint_.host;
  id.master_port = store_endpoint_.port;
  const std::string dir = run_dir_->rankDir(attempt, id.rank, joiner ? "_id" + std::to_string(*elastic_id) : "");
  id.error_file = dir + "/error.json";

  WorkerLaunch launch;
  launch.rank = id.rank;
  launch.local_rank = local_rank;
  launch.env = workerEnvironment(base_env_, id, omp_threads_);
  if (elastic_id) {
    setVariable(&launch.env, dist::elastic_keys::kIdEnv, std::to_string(*elastic_id));
    setVariable(&launch.env, dist::elastic_keys::kJoinEnv, joiner ? std::optional<std::string>("1") : std::nullopt);
  }
  launch.error_file = id.error_file;
  const std::string prefix = "[rank " + std::to_string(id.rank) + "]: ";
  launch.out =
      StreamTarget{prefix, opts_.consoleOutput() ? 1 : -1, run_dir_->keepsLogs() ? dir + "/stdout.log" : "", 0};
  launch.err = StreamTarget{prefix, opts_.consoleOutput() ? 2 : -1, run_dir_->keepsLogs() ? dir + "/stderr.log" : "",
                            kTailLines};
  return launch;
}

WorkerFailure Agent::describeFailure(const WorkerGroup& group, size_t index) const {
  const WorkerLaunch& launch = group.launch(index);
  WorkerFailure f = observeFailure(opts_.node_rank, launch.rank, launch.local_rank, group.process(index).pid(),
                                   *group.process(index).status());
  readErrorFile(launch.error_file, &f);
  for (const auto& line : group.stderrTail(index)) {
    f.stderr_tail.push_back(line.size() <= kTailLineChars ? line : line.substr(0, kTailLineChars) + " [...]");
  }
  return f;
}

AttemptOutcome Agent::stopOutcome(int signal) const {
  AttemptOutcome stop;
  stop.kind = AttemptOutcome::Kind::kStopped;
  stop.signal = signal;
  stop.node_rank = opts_.node_rank;
  stop.host = host_;
  return stop;
}

int Agent::finish(int code) {
  const std::vector<int> missing = coordinator_->leave(opts_.grace_period + kLeaveMargin);
  if (!missing.empty()) {
    std::string nodes;
    for (int n : missing) nodes += (nodes.empty() ? "" : ", ") + std::to_string(n);
    log_.info("node rank(s) ", nodes, " did not confirm the end of the job; exiting anyway");
  }
  return code;
}

}  // namespace loom::launcher
