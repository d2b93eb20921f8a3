// The launcher's side of elastic training (docs/launcher.md "Elastic mode"): a
// worker's death does not stop the job. The survivors carry on by themselves
// (elastic/); this monitor only
//   - reports each death of a local worker in the store at once (dead/<id>,
//     then the failures counter; runtime/dist/elastic_keys.h),
//   - SIGKILLs a local worker whose dead/<id> its peers wrote (evicted: hung or
//     stopped), so it cannot come back,
//   - starts a replacement under policy REPLACE, within --max-restarts,
//   - ends the attempt once every local worker has exited.
// Other nodes' launchers do the same for their workers through the same store;
// a stop signal still stops every node (JobCoordinator).
#pragma once

#include "launcher/failure_report.h"
#include "launcher/job_coordinator.h"
#include "launcher/launch_log.h"
#include "launcher/launch_options.h"
#include "launcher/signal_watch.h"
#include "launcher/worker_group.h"
#include "runtime/config/options.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace loom::launcher {

/// Whether a worker that ended with `status` is lost (a death the job recovers
/// from) rather than stopped by itself: lost when its peers declared it dead or
/// the launcher evicted it (`declared_dead`), when it was killed by a signal, or
/// when it exited with a code other than 0, 2 (bad input: every worker would
/// fail the same way) and 3 (peer lost: the survivors stop below min_ranks).
bool isLoss(const ExitStatus& status, bool declared_dead);

/// loom-launch's exit code from the workers that ran to their end (neither
/// lost nor released), in the order they exited: 0 when all exited 0, else the
/// first non-zero one's (128 + signal when killed); nullopt when there are none.
std::optional<int> survivorsExitCode(const std::vector<ExitStatus>& survivors);

/// One lost worker of this node.
struct ElasticLoss {
  int elastic_id = 0;
  std::string reason;  ///< the dead/<id> text in effect (ours, or the evicting peer's)
  bool evicted = false;
  WorkerFailure failure;
};

class ElasticMonitor {
 public:
  struct Context {
    const LaunchOptions& opts;
    const ElasticOptions& elastic;
    const LaunchLog& log;
    SignalWatch& signals;
    JobCoordinator& coordinator;
    c10d::Store& store;      ///< prefixed with elastic_keys::root(attempt)
    int initial_world_size;  ///< replacement ids start here
    std::string program_name;
    /// The launch of a worker in slot `local_rank` with elastic id `id`; a joiner is a replacement.
    std::function<WorkerLaunch(int local_rank, int id, bool joiner)> make_launch;
    /// The failure record of exited worker `index` (exit status, error file, stderr tail).
    std::function<WorkerFailure(const WorkerGroup& group, size_t index)> describe_failure;
    /// What this launcher reports to the other nodes when stopped by `signal`.
    std::function<AttemptOutcome(int signal)> stop_outcome;
  };

  /// REQUIRES: everything `context` refers to outlives the monitor.
  explicit ElasticMonitor(Context context);

  /// Watches `group`, whose worker i has elastic id `ids[i]` (initial workers,
  /// no joiner among them), until every worker exited and every node is done,
  /// or the job is stopped by a signal. Prints the elastic summary (and the
  /// failure summary when every local worker was lost) and returns this node's
  /// exit code (docs/launcher.md "Elastic mode"). Throws when the store fails.
  int run(WorkerGroup& group, const std::vector<int>& ids);

 private:
  struct Slot {
    int id = 0;
    bool joiner = false;
    bool evicted = false;  ///< killed by the launcher because its peers declared it dead
    std::string evict_reason;
    bool released = false;  ///< a joiner stopped by the launcher after training finished
    bool lost = false;
    bool ended = false;
  };

  void handleExits(WorkerGroup& group);
  void handleExit(WorkerGroup& group, size_t index);
  void replace(WorkerGroup& group, size_t lost_index);
  void evictDeclaredDead(WorkerGroup& group);
  void releaseJoiners(WorkerGroup& group);
  /// Stops every local worker (a stop signal here or on another node); returns the signal that came meanwhile.
  int stopAll(WorkerGroup& group);
  bool finished();
  std::string who(const WorkerGroup& group, size_t index) const;
  int conclude(const WorkerGroup& group);

  Context ctx_;
  std::vector<Slot> slots_;
  std::vector<size_t> exit_order_;
  std::vector<ElasticLoss> lost_;
  std::vector<int> replacement_ids_;
  int replacements_used_ = 0;
  int stop_signal_ = 0;
  std::optional<std::chrono::steady_clock::time_point> release_deadline_;
};

}  // namespace loom::launcher
