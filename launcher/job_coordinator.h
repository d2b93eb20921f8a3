// Keeps the launchers of one job in step across attempts (restarts), through the
// rendezvous store. Every key lives under attempt/<k>/, so attempt k+1 never
// sees attempt k's state:
//   ready, ready/<node>  barrier: every member node starts attempt k together,
//                        after all of them stopped attempt k-1's workers;
//   outcome              the first failure (or stop) any node reports: first
//                        writer wins, and every node acts on that one record, so
//                        all nodes agree on the root cause and on restarting;
//   succeeded            nodes whose workers all exited 0;
//   left                 nodes done with the job, so node 0 (which hosts the
//                        store) exits only after the others read the outcome.
// A single-node job runs the same protocol against its own store.
#pragma once

#include "launcher/failure_report.h"
#include "launcher/node_rendezvous.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace loom::launcher {

struct AttemptOutcome {
  enum class Kind { kFailed, kStopped };
  Kind kind = Kind::kFailed;
  WorkerFailure failure;  ///< kFailed: the root cause
  int signal = 0;         ///< kStopped: the signal a launcher received
  int node_rank = 0;      ///< the node that reported it
  std::string host;

  std::string toJson() const;
  static AttemptOutcome fromJson(const std::string& json);
};

class JobCoordinator {
 public:
  /// REQUIRES: `store` outlives the coordinator. `timeout` bounds the barrier.
  JobCoordinator(c10d::Store& store, Membership membership, int node_rank, std::chrono::milliseconds timeout);

  /// Waits until every member node entered `attempt`. Throws PeerLostError naming
  /// the nodes missing after the timeout, and StopRequested when a node reported
  /// a stop for this attempt meanwhile. `check_interrupt` may throw to abandon it.
  void enterAttempt(int attempt, const std::function<void()>& check_interrupt);

  /// Reports `outcome` for the current attempt unless a node reported one first;
  /// returns the outcome in effect.
  AttemptOutcome report(const AttemptOutcome& outcome);
  /// Reports a stop for the attempt after the current one, so nodes that are
  /// about to restart stop at its barrier instead of waiting for this node.
  void reportStopAhead(const AttemptOutcome& stop);
  /// The outcome some node reported for the current attempt, if any.
  std::optional<AttemptOutcome> reported();

  /// This node's workers all exited 0.
  void reportSuccess();
  bool everyNodeSucceeded();

  /// The job is over for this node. Node 0 waits up to `timeout` for the other
  /// nodes to leave too, so they can still read the store; returns the node
  /// ranks that did not (empty when all did, and always on other nodes).
  std::vector<int> leave(std::chrono::milliseconds timeout);

 private:
  std::string key(const std::string& name) const;

  c10d::Store& store_;
  Membership membership_;
  int node_rank_;
  std::chrono::milliseconds timeout_;
  int attempt_ = -1;
};

}  // namespace loom::launcher
