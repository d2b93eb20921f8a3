// The workers of one attempt on this node: started together, their output
// forwarded as it arrives, their exits collected, and stopped together
// (torchrun's shutdown: SIGTERM, a grace period, then SIGKILL).
#pragma once

#include "launcher/child_process.h"
#include "launcher/launch_log.h"
#include "launcher/signal_watch.h"
#include "launcher/worker_output.h"

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace loom::launcher {

struct WorkerLaunch {
  int rank = 0;
  int local_rank = 0;
  std::vector<std::string> env;  ///< the whole environment (worker_env.h)
  std::string error_file;
  StreamTarget out;
  StreamTarget err;
};

class WorkerGroup {
 public:
  /// Starts every worker. Throws InputError when the program cannot be run
  /// (workers already started are killed).
  WorkerGroup(std::string program, std::vector<std::string> args, std::vector<WorkerLaunch> launches,
              const LaunchLog& log);
  /// Workers still running are killed with SIGKILL (the orderly way is stop()).
  ~WorkerGroup() = default;

  /// Starts one more worker (the same program and args) in the running group, at
  /// the next index, and returns that index; indices of the others do not change.
  /// Throws as the constructor does (the group is then unchanged).
  size_t add(WorkerLaunch launch);

  /// Waits up to `timeout` for worker output or a signal (SIGCHLD included, so a
  /// worker's exit ends the wait at once), forwarding whatever output arrived.
  /// Returns the stop signal (SIGINT, SIGTERM, ...) that arrived, 0 when none.
  int waitForEvents(std::chrono::milliseconds timeout, SignalWatch& signals);

  /// Collects workers that exited since the last call (their output so far is
  /// forwarded first, so tails are complete); returns their indices.
  std::vector<size_t> reapExited();

  /// SIGTERM to every running worker's process group, up to `grace` for them to
  /// exit while their output keeps flowing, then SIGKILL to the rest; returns once
  /// all are reaped. A stop signal to the launcher meanwhile ends the grace period
  /// at once; the first such signal is returned (0 when none came).
  int stop(std::chrono::milliseconds grace, SignalWatch& signals);

  /// Forwards output still buffered in the pipes, up to `limit` of waiting.
  void drainOutput(std::chrono::milliseconds limit);

  size_t size() const { return workers_.size(); }
  bool allExited() const;
  bool allSucceeded() const;
  const WorkerLaunch& launch(size_t i) const { return workers_[i].launch; }
  const ChildProcess& process(size_t i) const { return *workers_[i].process; }
  const std::deque<std::string>& stderrTail(size_t i) const { return workers_[i].err->tail(); }

 private:
  struct Worker {
    WorkerLaunch launch;
    std::unique_ptr<WorkerOutput> out;
    std::unique_ptr<WorkerOutput> err;
    std::unique_ptr<ChildProcess> process;
  };

  void drainWorker(Worker& w);
  /// Polls every open worker stream (and `extra_fd` when >= 0) up to `timeout`,
  /// forwarding what arrived. False when nothing was ready or nothing is open.
  bool pollStreams(std::chrono::milliseconds timeout, int extra_fd);
  bool anyRunning() const;
  Worker start(WorkerLaunch launch) const;

  std::string program_;
  std::vector<std::string> args_;
  std::vector<Worker> workers_;
  const LaunchLog& log_;
};

}  // namespace loom::launcher
