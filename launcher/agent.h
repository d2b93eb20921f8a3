// The launcher's agent: rendezvous with the other nodes, then run attempts of the
// worker group until one succeeds, the job is stopped, or the failure policy
// gives up (docs/launcher.md "Failure policy"). In elastic mode (the worker's
// config says elastic.policy REPLACE or SHRINK) one attempt runs under
// ElasticMonitor instead, which lets the job outlive its workers.
#pragma once

#include "launcher/elastic_mode.h"
#include "launcher/job_coordinator.h"
#include "launcher/launch_log.h"
#include "launcher/launch_options.h"
#include "launcher/run_directory.h"
#include "launcher/signal_watch.h"
#include "launcher/worker_group.h"

#include <optional>
#include <string>
#include <vector>

namespace loom::launcher {

class Agent {
 public:
  explicit Agent(LaunchOptions opts);

  /// Runs the job to its end and returns loom-launch's exit code: 0 when every
  /// worker succeeded (or all exited 0 after a stop signal), the root cause's
  /// exit code (128 + signal when it was killed) when the job failed, 128 +
  /// signal when the launcher was stopped. Throws for the launcher's own errors
  /// (InputError: bad flags or endpoint; PeerLostError: nodes missing).
  /// REQUIRES: called on the main thread before any other thread was started.
  int run();

 private:
  struct AttemptResult {
    std::optional<AttemptOutcome> outcome;      ///< nullopt: every node's workers succeeded
    std::vector<WorkerFailure> local_failures;  ///< this node's, earliest first
    bool local_all_succeeded = false;
    int stop_signal = 0;  ///< the first stop signal this launcher received during the attempt
  };

  int runJob();
  AttemptResult runAttempt(int attempt);
  /// The exit code the attempt's result ends the job with; nullopt: restart.
  std::optional<int> conclude(int attempt, const AttemptResult& result);
  AttemptResult monitor(WorkerGroup& group, int attempt);
  /// The elastic attempt: returns this node's exit code.
  int runElasticAttempt(int attempt);
  void logStarted(const WorkerGroup& group, int attempt) const;
  std::vector<WorkerLaunch> makeLaunches(int attempt) const;
  /// Worker `local_rank` of this node; in elastic mode with its elastic id, a
  /// joiner being a replacement (LOOM_ELASTIC_JOIN=1, its own log directory).
  WorkerLaunch makeLaunch(int attempt, int local_rank, std::optional<int> elastic_id, bool joiner) const;
  WorkerFailure describeFailure(const WorkerGroup& group, size_t index) const;
  AttemptOutcome stopOutcome(int signal) const;
  [[noreturn]] void throwStoreLost(int attempt, const std::exception& e) const;
  /// Ends the job on this node with `code`, after node 0 saw the others leave.
  int finish(int code);

  LaunchOptions opts_;
  LaunchLog log_;
  std::string host_;
  // Set up by run() and runJob(), in this order; torn down in reverse, so the
  // store's threads are gone before the signal mask is restored.
  std::optional<SignalWatch> signals_;
  c10::intrusive_ptr<c10d::Store> base_store_;  ///< the launch store itself (elastic keys live here)
  c10::intrusive_ptr<c10d::Store> job_store_;   ///< this run's prefix of the launch store
  Endpoint store_endpoint_;
  Membership membership_;
  std::optional<ElasticMode> elastic_;  ///< set in elastic mode
  std::optional<JobCoordinator> coordinator_;
  std::optional<RunDirectory> run_dir_;
  std::vector<std::string> base_env_;
  int omp_threads_ = 1;
};

}  // namespace loom::launcher
