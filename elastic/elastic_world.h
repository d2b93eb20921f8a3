// The communicators of an elastic job and the membership they serve
// (ARCHITECTURE.md §2 "Elastic", docs/elastic.md "Recovery").
//
// An ElasticWorld owns, for the current membership generation g, two Gloo
// communicators over the members (in id order): main() for training and
// replication() for buddy snapshots on a background thread. Their keys live
// under the store's "elastic/gen/<g>/", so a rebuilt pair never reads a dead
// generation's keys.
// Sub-communicators of main() (split()) belong to the generation as well.
// Around them:
//   - a HeartbeatPublisher for this worker's stable id;
//   - a watchdog thread that looks at the store every poll interval and aborts
//     both communicators (every wait on them throws at once) when a current
//     member is reported lost
//     ("dead/<id>", written by the launcher when the process exits, or by this
//     watchdog when a member's heartbeat has been silent past the timeout), or
//     when a member reported a failed operation for this generation; it also
//     notices replacement workers waiting to join.
// The step loop turns a PeerLostError into recover() and, at a step boundary
// where every member saw joiners (the commit vote carries the flag), calls
// admitJoiners(). Both are collective over the members that remain and return
// the new generation; restoring the training state over it is the caller's.
//
// Thread-safety: recover(), admitJoiners(), main() and replication() belong to
// the training thread; reportFailure(), aborted() and joinersWaiting() may be
// called from any. The watchdog, the heartbeats and the training thread share
// the store client, so nothing here blocks on the store for long (waits poll).
#pragma once

#include "elastic/heartbeat.h"
#include "elastic/membership.h"
#include "runtime/config/options.h"
#include "runtime/core/logging.h"
#include "runtime/dist/communicator.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace loom::elastic {

struct ElasticWorldOptions {
  int id = 0;             ///< this worker's stable id (LOOM_ELASTIC_ID, else its rank)
  int initial_world = 1;  ///< members of generation 0: ids 0 .. initial_world - 1
  bool joiner = false;    ///< a replacement joining a running job (LOOM_ELASTIC_JOIN=1)
  ElasticOptions elastic;
  /// Timeout of every operation of the communicators built (parallel.timeout_s).
  std::chrono::milliseconds op_timeout{std::chrono::minutes(10)};
};

/// The job cannot continue with the members left (below elastic.min_ranks, or
/// the split-brain guard): stop, after a durable checkpoint if the state allows.
class QuorumLostError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The job ended before this joiner was admitted.
class JobFinishedError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A generation change as seen by a member that took part in it.
struct GenerationChange {
  Membership previous;     ///< empty members for a joiner's first generation
  Membership current;
  std::vector<int> lost;   ///< previous members not in current
  std::vector<int> joined; ///< current members not in previous
  double rebuild_ms = 0;   ///< agreeing on the membership and building the communicators
  /// Fewer members than elastic.min_ranks remain, but a strict majority of the
  /// previous generation: they regrouped only to write a durable checkpoint and stop.
  bool below_minimum = false;
};

class ElasticWorld {
 public:
  /// `store` is the worker's job store (connectStore()). Initial members build
  /// generation 0 together; a joiner announces itself and waits until the
  /// members admit it (JobFinishedError when the job ends first). Throws
  /// PeerLostError when members do not arrive within elastic.rebuild_timeout_s.
  ElasticWorld(c10::intrusive_ptr<c10d::Store> store, ElasticWorldOptions opts, const Logger& log);
  /// Stops the watchdog and the heartbeats; communicators go last.
  ~ElasticWorld();
  ElasticWorld(const ElasticWorld&) = delete;
  ElasticWorld& operator=(const ElasticWorld&) = delete;

  int id() const { return opts_.id; }
  const Membership& membership() const { return membership_; }
  /// How this worker entered its first generation (joiners: with previous empty).
  const GenerationChange& entry() const { return entry_; }
  dist::Communicator& main() { return *main_; }
  dist::Communicator& replication() { return *replication_; }
  /// A sub-communicator of main() over `ranks` (ascending ranks of main(),
  /// this worker's included; every listed member calls with the same list in
  /// the same order). The world owns it: it is aborted with main() and retired
  /// with the generation, so the reference dies at the next generation change.
  dist::Communicator& split(const std::vector<int>& ranks);

  /// Aborts both communicators and tells the other members this generation
  /// failed (`why` goes to the log). Idempotent.
  void reportFailure(const std::string& why);
  /// Whether the current generation's communicators were aborted (by a
  /// failure report, here or from the watchdog).
  bool aborted();

  /// After an operation failed: aborts the communicators, waits until the lost
  /// members are known (the launcher's exit reports arrive within milliseconds;
  /// a hung member is declared lost by the heartbeat timeout), agrees on the
  /// next generation without them by compare-and-set, and builds its
  /// communicators. Below elastic.min_ranks the survivors still regroup (to
  /// checkpoint) and the change says below_minimum. Throws QuorumLostError when
  /// the survivors are no strict majority of the previous generation (they
  /// must not write anything: the other side may go on), PeerLostError when
  /// rebuilding fails repeatedly.
  GenerationChange recover(const std::string& cause);

  /// Whether the watchdog saw a replacement waiting to join (the step loop
  /// votes on it so every member admits at the same step).
  bool joinersWaiting() const { return joiners_waiting_.load(); }
  /// Collective over the current members, at the same step boundary: admits
  /// the waiting joiners (up to elastic.max_ranks) as the next generation.
  GenerationChange admitJoiners();

  /// Marks the job finished in the store, so waiting joiners exit.
  void markFinished();

 private:
  void startWatchdog();
  void stopWatchdog();
  void watch();
  /// Aborts the generation's communicators (once per generation).
  void abortLocked();
  /// Members of the current generation that the store lists as lost.
  std::vector<int> lostMembers();
  /// Joiner ids waiting for admission (not in `members`, not lost), ascending.
  std::vector<int> waitingJoiners(const std::vector<int>& members);
  /// elastic.max_ranks, or the starting world size when it is 0.
  int64_t maxMembers() const;
  /// Waits until every member of `next` arrived at its generation; throws
  /// PeerLostError as soon as one is reported lost, or at the rebuild timeout.
  void awaitMembers(const Membership& next);
  /// Builds the communicators of `m` (this worker must be a member).
  void buildCommunicators(const Membership& m);
  /// Proposes `members` as generation after_generation + 1 (or joins the
  /// winner's), waits for its members and builds its communicators.
  GenerationChange changeTo(const std::vector<int>& members, int64_t after_generation, const char* why);
  /// Enters generation `next` (this worker must be in it): retires the old
  /// communicators, waits for the members and builds the new ones.
  GenerationChange enter(const Membership& next, const std::string& why);
  void retire();

  c10::intrusive_ptr<c10d::Store> store_;  ///< PrefixStore "elastic" over the job store
  ElasticWorldOptions opts_;
  const Logger& log_;
  MembershipStore memberships_;
  Membership membership_;
  GenerationChange entry_;
  std::unique_ptr<dist::Communicator> main_;
  std::unique_ptr<dist::Communicator> replication_;
  std::vector<std::unique_ptr<dist::Communicator>> derived_;  ///< split() of the current generation
  std::vector<std::unique_ptr<dist::Communicator>> retired_;  ///< aborted; never destroyed (see ~ElasticWorld)
  std::unique_ptr<HeartbeatPublisher> heartbeat_;

  std::mutex mutex_;  ///< guards aborted_, watched_generation_ and the communicator pointers for abort
  std::condition_variable wake_;
  bool stop_ = false;
  bool aborted_ = false;
  int64_t watched_generation_ = -1;
  std::vector<int> watched_members_;
  std::atomic<bool> joiners_waiting_{false};
  std::thread watchdog_;
};

}  // namespace loom::elastic
