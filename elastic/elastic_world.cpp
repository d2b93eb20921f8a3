#include "elastic/elastic_world.h"

#include "runtime/core/error.h"
#include "runtime/dist/elastic_keys.h"
#include "runtime/dist/gloo_communicator.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <algorithm>

namespace loom::elastic {
namespace {

namespace keys = dist::elastic_keys;
using Clock = std::chrono::steady_clock;

std::chrono::milliseconds seconds(double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0)); }

/// Namespace of the membership and heartbeat keys under "elastic/".
constexpr const char* kMembersPrefix = "members";
/// Rebuild attempts in one recovery before giving up (each may find one more member lost).
constexpr int kRebuildAttempts = 4;


std::string joinIds(const std::vector<int>& ids) {
  std::string out;
  for (int id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return out;
}

bool contains(const std::vector<int>& ids, int id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); }

std::vector<int> minus(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out;
  for (int x : a) {
    if (!contains(b, x)) out.push_back(x);
  }
  return out;
}

bool setIfAbsent(c10d::Store& store, const std::string& key, const std::string& value) {
  const std::vector<uint8_t> wanted(value.begin(), value.end());
  return store.compareSet(key, {}, wanted) == wanted;
}

}  // namespace

ElasticWorld::ElasticWorld(c10::intrusive_ptr<c10d::Store> store, ElasticWorldOptions opts, const Logger& log)
    : store_(c10::make_intrusive<c10d::PrefixStore>(keys::kWorkerPrefix, std::move(store))),
      opts_(std::move(opts)),
      log_(log),
      memberships_(store_, kMembersPrefix) {
  LOOM_CHECK_INPUT(opts_.initial_world >= 1 && opts_.id >= 0, "elastic: id ", opts_.id, " and initial world ",
                   opts_.initial_world, " must be >= 0 and >= 1");
  HeartbeatOptions beats;
  beats.prefix = kMembersPrefix;
  beats.interval = seconds(opts_.elastic.heartbeat_interval_s);
  beats.timeout = seconds(opts_.elastic.heartbeat_timeout_s);
  heartbeat_ = std::make_unique<HeartbeatPublisher>(store_, opts_.id, beats);
  const auto start = Clock::now();
  if (!opts_.joiner) {
    std::vector<int> initial(static_cast<size_t>(opts_.initial_world));
    for (int i = 0; i < opts_.initial_world; ++i) initial[static_cast<size_t>(i)] = i;
    const Membership first = memberships_.initialize(initial);
    LOOM_CHECK_INPUT(first.generation == 0, "elastic: worker ", opts_.id, " started as an initial member but the job ",
                     "is at ", first.describe(), ": a replacement must be started with ", keys::kJoinEnv, "=1");
    buildCommunicators(first);
    entry_.current = first;
    entry_.joined = first.members;
  } else {
    store_->set(keys::join(opts_.id), std::vector<uint8_t>{'1'});
    store_->add(keys::kJoinCount, 1);
    log_.info("elastic: worker ", opts_.id, " waits to be admitted at a step boundary");
    const auto deadline = Clock::now() + seconds(opts_.elastic.rebuild_timeout_s);
    while (true) {
      if (store_->check({keys::kFinished})) {
        throw JobFinishedError("elastic: the job finished before worker " + std::to_string(opts_.id) +
                               " was admitted");
      }
      const Membership now = memberships_.current();
      if (contains(now.members, opts_.id)) {
        awaitMembers(now);
        buildCommunicators(now);
        entry_.current = now;
        entry_.joined = {opts_.id};
        break;
      }
      if (Clock::now() >= deadline) {
        LOOM_THROW(PeerLostError, "elastic: worker ", opts_.id, " was not admitted within ",
                   opts_.elastic.rebuild_timeout_s, " s (elastic.rebuild_timeout_s); the job is at ", now.describe());
      }
      std::this_thread::sleep_for(seconds(opts_.elastic.poll_interval_s));
    }
  }
  entry_.rebuild_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  startWatchdog();
}

ElasticWorld::~ElasticWorld() {
  stopWatchdog();
  heartbeat_.reset();
  // Retired communicators are left to the process's end on purpose: one whose
  // Gloo thread is still blocked on a peer that was lost (a stopped process
  // the launcher has not killed yet, a partition) would hold its destructor,
  // and so this process's exit, until Gloo's transport timeout.
  for (auto& retired : retired_) (void)retired.release();
}

void ElasticWorld::buildCommunicators(const Membership& m) {
  const auto it = std::find(m.members.begin(), m.members.end(), opts_.id);
  LOOM_CHECK(it != m.members.end(), "elastic: worker ", opts_.id, " is not in ", m.describe());
  const int rank = static_cast<int>(it - m.members.begin());
  const int size = static_cast<int>(m.members.size());
  dist::GlooOptions gloo;
  gloo.comm.timeout = opts_.op_timeout;
  gloo.connect_timeout = seconds(opts_.elastic.rebuild_timeout_s);
  if (size == 1) {
    main_ = dist::makeSelfCommunicator(gloo.comm);
    replication_ = dist::makeSelfCommunicator(gloo.comm);
  } else {
    // One after the other: both wait on the same store client, so building
    // them at once could deadlock the members against each other.
    const auto generation_store = memberships_.storeFor(m.generation);
    main_ = dist::makeGlooCommunicator(c10::make_intrusive<c10d::PrefixStore>("main", generation_store), rank, size,
                                       gloo);
    replication_ = dist::makeGlooCommunicator(c10::make_intrusive<c10d::PrefixStore>("replication", generation_store),
                                              rank, size, gloo);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  membership_ = m;
  watched_generation_ = m.generation;
  watched_members_ = m.members;
  aborted_ = false;
}

void ElasticWorld::awaitMembers(const Membership& next) {
  // Failures often come together (a host with several ranks goes down): a
  // member lost after the proposal must not hold the others up until the
  // rebuild timeout, so the wait looks at the lost list between polls.
  const auto generation_store = memberships_.storeFor(next.generation);
  generation_store->set("arrived/" + std::to_string(opts_.id), std::vector<uint8_t>{'1'});
  std::vector<std::string> arrivals;
  for (int id : next.members) arrivals.push_back("arrived/" + std::to_string(id));
  const auto deadline = Clock::now() + seconds(opts_.elastic.rebuild_timeout_s);
  // Polls with check(), never a Store::wait with a timeout: after such a wait
  // times out, c10d's server still answers it later on the same connection,
  // where the next request would read that answer as its own.
  const auto longest = std::max(seconds(opts_.elastic.poll_interval_s), std::chrono::milliseconds(1));
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    if (generation_store->check(arrivals)) return;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, longest);
    for (int id : next.members) {
      if (id != opts_.id && store_->check({keys::dead(id)})) {
        LOOM_THROW(PeerLostError, "elastic: worker ", id, " was lost while ", next.describe(), " formed");
      }
    }
    if (Clock::now() >= deadline) {
      std::vector<int> missing;
      for (int id : next.members) {
        if (!generation_store->check({"arrived/" + std::to_string(id)})) missing.push_back(id);
      }
      LOOM_THROW(PeerLostError, "elastic: worker(s) ", joinIds(missing), " did not join ", next.describe(), " within ",
                 opts_.elastic.rebuild_timeout_s, " s (elastic.rebuild_timeout_s)");
    }
  }
}

void ElasticWorld::reportFailure(const std::string& why) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    first = !aborted_;
    abortLocked();
  }
  if (!first) return;
  log_.warning("elastic: ", membership_.describe(), " failed: ", why);
  try {
    memberships_.storeFor(membership_.generation)->set("failed", std::vector<uint8_t>{'1'});
    store_->add(keys::kFailures, 1);
  } catch (const std::exception&) {
    // The store is gone: recover() reports that with context.
  }
}

bool ElasticWorld::aborted() {
  std::lock_guard<std::mutex> lock(mutex_);
  return aborted_;
}

void ElasticWorld::abortLocked() {
  if (aborted_) return;
  aborted_ = true;
  if (main_) main_->abort();
  if (replication_) replication_->abort();
  for (auto& comm : derived_) comm->abort();
}

std::vector<int> ElasticWorld::lostMembers() {
  std::vector<int> lost;
  for (int id : membership_.members) {
    if (id != opts_.id && store_->check({keys::dead(id)})) lost.push_back(id);
  }
  return lost;
}

int64_t ElasticWorld::maxMembers() const {
  return opts_.elastic.max_ranks > 0 ? opts_.elastic.max_ranks : opts_.initial_world;
}

std::vector<int> ElasticWorld::waitingJoiners(const std::vector<int>& members) {
  const int64_t allocated = store_->add(keys::kNextId, 0);
  std::vector<int> joiners;
  for (int64_t i = 0; i < allocated; ++i) {
    const int id = opts_.initial_world + static_cast<int>(i);
    if (contains(members, id)) continue;
    if (store_->check({keys::join(id)}) && !store_->check({keys::dead(id)})) joiners.push_back(id);
  }
  return joiners;
}

GenerationChange ElasticWorld::recover(const std::string& cause) {
  const auto start = Clock::now();
  reportFailure(cause);
  const Membership before = membership_;
  for (int attempt = 1;; ++attempt) {
    // A process death is in the store within milliseconds (the launcher); a
    // hung member only once its heartbeat times out (the watchdog writes it).
    const auto deadline = Clock::now() + seconds(opts_.elastic.heartbeat_timeout_s) + std::chrono::seconds(1);
    std::vector<int> lost = lostMembers();
    while (lost.empty() && Clock::now() < deadline) {
      std::this_thread::sleep_for(seconds(opts_.elastic.poll_interval_s));
      lost = lostMembers();
    }
    std::vector<int> healthy = minus(membership_.members, lost);
    if (opts_.elastic.policy == ElasticPolicy::kReplace) {
      const int64_t limit = maxMembers();
      // Optionally wait for the launcher's replacements, so they take the lost
      // ranks' places now and the world size never drops.
      const auto join_deadline = Clock::now() + seconds(opts_.elastic.join_timeout_s);
      while (waitingJoiners(membership_.members).size() < lost.size() && Clock::now() < join_deadline &&
             !store_->check({keys::kFinished})) {
        std::this_thread::sleep_for(seconds(opts_.elastic.poll_interval_s));
      }
      for (int id : waitingJoiners(membership_.members)) {
        if (static_cast<int64_t>(healthy.size()) < limit) healthy.push_back(id);
      }
    }
    QuorumDecision decision = decideQuorum(membership_.members, healthy, static_cast<int>(opts_.elastic.min_ranks));
    bool below_minimum = false;
    if (!decision.proceed) {
      // Below the minimum but a strict majority: regroup to checkpoint, then stop.
      const QuorumDecision majority = decideQuorum(membership_.members, healthy, 1);
      if (!majority.proceed) {
        throw QuorumLostError("elastic: " + membership_.describe() + " lost worker(s) " + joinIds(lost) + ": " +
                              majority.message);
      }
      log_.warning("elastic: ", decision.message);
      decision = majority;
      below_minimum = true;
    }
    try {
      // Another survivor may have proposed already: join its generation when
      // it holds no lost member; otherwise (it could not form) propose after it.
      const Membership in_store = memberships_.current();
      bool usable = in_store.generation > membership_.generation && contains(in_store.members, opts_.id);
      for (int id : in_store.members) usable = usable && (id == opts_.id || !store_->check({keys::dead(id)}));
      GenerationChange change = usable ? enter(in_store, "recovery")
                                       : changeTo(decision.members, in_store.generation, "recovery");
      change.below_minimum = below_minimum;
      change.previous = before;
      change.lost = minus(before.members, change.current.members);
      change.joined = minus(change.current.members, before.members);
      change.rebuild_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      return change;
    } catch (const PeerLostError& e) {
      if (attempt >= kRebuildAttempts) {
        LOOM_THROW(PeerLostError, "elastic: worker ", opts_.id, " could not rebuild the communicators after ", attempt,
                   " attempts (", cause, "): ", errorMessage(e));
      }
      log_.warning("elastic: rebuilding ", membership_.describe(), " failed (", errorMessage(e), "); retrying");
      reportFailure(errorMessage(e));
    }
  }
}

GenerationChange ElasticWorld::admitJoiners() {
  const auto start = Clock::now();
  const Membership before = membership_;
  std::vector<int> members = before.members;
  for (int id : waitingJoiners(before.members)) {
    if (static_cast<int64_t>(members.size()) < maxMembers()) members.push_back(id);
  }
  std::sort(members.begin(), members.end());
  GenerationChange change = changeTo(members, before.generation, "admission");
  change.previous = before;
  change.lost = minus(before.members, change.current.members);
  change.joined = minus(change.current.members, before.members);
  change.rebuild_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return change;
}

GenerationChange ElasticWorld::changeTo(const std::vector<int>& members, int64_t after_generation, const char* why) {
  const Proposal proposal = memberships_.proposeNext(after_generation, members);
  return enter(proposal.membership, proposal.accepted ? c10::str(why, " (proposed here)") : c10::str(why, " (agreed)"));
}

GenerationChange ElasticWorld::enter(const Membership& next, const std::string& why) {
  if (!contains(next.members, opts_.id)) {
    LOOM_THROW(PeerLostError, "elastic: worker ", opts_.id, " is not a member of ", next.describe(),
               ": the other workers declared it lost; it stops");
  }
  log_.info("elastic: ", why, ": ", membership_.describe(), " -> ", next.describe());
  retire();
  awaitMembers(next);
  buildCommunicators(next);
  joiners_waiting_.store(false);
  GenerationChange change;
  change.current = next;
  return change;
}

void ElasticWorld::retire() {
  std::lock_guard<std::mutex> lock(mutex_);
  abortLocked();
  if (main_) retired_.push_back(std::move(main_));
  if (replication_) retired_.push_back(std::move(replication_));
  for (auto& comm : derived_) retired_.push_back(std::move(comm));
  derived_.clear();
}

dist::Communicator& ElasticWorld::split(const std::vector<int>& ranks) {
  std::unique_ptr<dist::Communicator> comm = ranks.size() == 1 ? dist::makeSelfCommunicator(main_->options())
                                                               : main_->split(ranks);
  std::lock_guard<std::mutex> lock(mutex_);
  // Aborted meanwhile: the new one must fail like the rest of its generation.
  if (aborted_) comm->abort();
  derived_.push_back(std::move(comm));
  return *derived_.back();
}

void ElasticWorld::markFinished() {
  try {
    store_->set(keys::kFinished, std::vector<uint8_t>{'1'});
  } catch (const std::exception& e) {
    log_.warning("elastic: could not mark the job finished in the store: ", errorMessage(e));
  }
}

void ElasticWorld::startWatchdog() { watchdog_ = std::thread([this] { watch(); }); }

void ElasticWorld::stopWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

void ElasticWorld::watch() {
  const auto poll = seconds(opts_.elastic.poll_interval_s);
  const auto heartbeat_poll = std::max(poll, seconds(opts_.elastic.heartbeat_interval_s) / 2);
  HeartbeatOptions beats;
  beats.prefix = kMembersPrefix;
  beats.timeout = seconds(opts_.elastic.heartbeat_timeout_s);
  std::unique_ptr<HeartbeatMonitor> monitor;
  int64_t monitored_generation = -1;
  int64_t failures_seen = -1;
  int64_t joins_seen = 0;
  auto next_heartbeat_poll = Clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, poll, [this] { return stop_; })) {
    const int64_t generation = watched_generation_;
    const std::vector<int> members = watched_members_;
    const bool aborted = aborted_;
    lock.unlock();
    try {
      if (generation != monitored_generation) {
        std::vector<int> peers;
        for (int id : members) {
          if (id != opts_.id) peers.push_back(id);
        }
        monitor = std::make_unique<HeartbeatMonitor>(store_, peers, beats);
        monitored_generation = generation;
      }
      bool failed = false;
      // Heartbeats: a silent member is declared lost here, so that the
      // launcher kills it and the survivors exclude it.
      if (Clock::now() >= next_heartbeat_poll) {
        next_heartbeat_poll = Clock::now() + heartbeat_poll;
        const std::vector<SilentRank> silent = monitor->poll();
        if (!silent.empty()) {
          const std::string why = describeSilentRanks(silent, beats.timeout);
          for (const SilentRank& s : silent) {
            if (setIfAbsent(*store_, keys::dead(s.rank), why)) store_->add(keys::kFailures, 1);
          }
          failed = true;
        }
      }
      // Failures reported by the launcher (a member exited) or a member.
      const int64_t failures = store_->add(keys::kFailures, 0);
      if (failures != failures_seen) {
        failures_seen = failures;
        for (int id : members) {
          if (id != opts_.id && store_->check({keys::dead(id)})) failed = true;
        }
        if (memberships_.storeFor(generation)->check({"failed"})) failed = true;
      }
      const int64_t joins = store_->add(keys::kJoinCount, 0);
      if (joins != joins_seen || joiners_waiting_.load()) {
        joins_seen = joins;
        joiners_waiting_.store(static_cast<int64_t>(members.size()) < maxMembers() && !waitingJoiners(members).empty());
      }
      lock.lock();
      if (failed && !aborted && watched_generation_ == generation) abortLocked();
    } catch (const std::exception&) {
      // The store is unreachable: the training thread's next store or
      // collective operation reports it with its own context.
      if (!lock.owns_lock()) lock.lock();
    }
  }
}

}  // namespace loom::elastic
