// Membership generations in the job's c10d store, and the quorum rule that
// decides whether the survivors of a failure may continue
// (ARCHITECTURE.md §2 "Elastic", parallel_elastic.md §4.3 and §4.7 "Agree").
//
// The store holds one key, "<prefix>/generation", whose value is the current
// membership: its generation number and its members (stable ids: the ranks of
// the original job, or worker ids). It changes only by compareSet from the
// exact value a proposer read, so when several survivors propose generation
// g+1 at once, exactly one proposal lands and every other proposer gets the
// winner's membership back. Each generation's process group takes its keys
// under "<prefix>/gen/<g>/" (storeFor(g)), so a rebuilt communicator never
// reads a dead generation's keys.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace loom::elastic {

struct Membership {
  int64_t generation = 0;
  /// Sorted, unique stable ids; a member's position is its rank in this generation.
  std::vector<int> members;

  /// "generation 2 (ranks 0, 1, 3)".
  std::string describe() const;
  bool operator==(const Membership& other) const { return generation == other.generation && members == other.members; }
};

/// What proposeNext() found: `accepted` when this proposal became the
/// generation; otherwise `membership` is the one in effect (a concurrent
/// winner's, or a newer one when the proposal was stale). Two proposals of the
/// same members for the same generation are indistinguishable: both report accepted.
struct Proposal {
  Membership membership;
  bool accepted = false;
};

class MembershipStore {
 public:
  /// `store` is shared by every rank of the job (e.g. connectStore()'s store).
  explicit MembershipStore(c10::intrusive_ptr<c10d::Store> store, std::string prefix = "elastic");

  /// Makes `members` generation 0 unless a membership exists already; returns the
  /// one in effect. Every rank calls it once at start with the same members.
  Membership initialize(std::vector<int> members);

  /// The membership in effect. Throws InputError when initialize() never ran.
  Membership current();

  /// Proposes `members` as generation `expected_generation + 1`. Atomic: of
  /// concurrent proposers for the same generation exactly one is accepted. A
  /// stale proposal (the store is past `expected_generation`) is rejected and
  /// returns the newer membership. Throws InputError for a generation the store
  /// has not reached, or for empty, negative or duplicate members.
  Proposal proposeNext(int64_t expected_generation, std::vector<int> members);

  /// Waits until the store reaches generation `generation` (or a later one) and
  /// returns that membership. Throws PeerLostError after `timeout`, naming the
  /// generation waited for and the members of the one still in effect.
  Membership waitForGeneration(int64_t generation, std::chrono::milliseconds timeout);

  /// "<prefix>/gen/<g>": the namespace of generation g's keys.
  std::string generationPrefix(int64_t generation) const;
  /// A PrefixStore over generationPrefix(g): keys land at "<prefix>/gen/<g>/<key>".
  c10::intrusive_ptr<c10d::Store> storeFor(int64_t generation) const;

 private:
  std::string generationKey() const { return prefix_ + "/generation"; }

  c10::intrusive_ptr<c10d::Store> store_;
  std::string prefix_;
};

/// The outcome of decideQuorum().
struct QuorumDecision {
  /// True: continue with `members`. False: stop (restart from a checkpoint); `message` says why.
  bool proceed = false;
  /// Every previous member is healthy (TorchFT's fast quorum): no rank was lost.
  bool fast = false;
  std::vector<int> members;  ///< the next generation's members (sorted), when proceeding
  std::vector<int> lost;     ///< previous members that are not healthy
  std::vector<int> joined;   ///< healthy ids that were not previous members
  std::string message;
};

/// TorchFT's lighthouse rules (quorum_compute), decided from this rank's own
/// view since loom has no central lighthouse:
///  1. fewer than `min_ranks` healthy -> stop: below the minimum (TorchFT's
///     min_replicas; checked on every path, so raising the minimum also stops a
///     fast quorum);
///  2. fast quorum: every previous member is healthy -> proceed with the healthy
///     set (previous members plus any joiners) at once;
///  3. split-brain guard: the healthy previous members must be a strict majority
///     of the previous membership (> previous/2), else stop. A network partition
///     leaves at most one side with a strict majority, so at most one side goes
///     on; an even split stops both. TorchFT compares participants with the
///     healthy replicas its lighthouse sees; without a lighthouse, the previous
///     membership is the only count both sides of a partition agree on, and
///     joiners do not count toward it (a side cannot outvote the other by
///     admitting new workers);
///  4. otherwise proceed with the healthy set.
/// Inputs need not be sorted; duplicates are ignored. Throws InputError when
/// `min_ranks` < 1.
QuorumDecision decideQuorum(const std::vector<int>& previous, const std::vector<int>& healthy, int min_ranks);

}  // namespace loom::elastic
