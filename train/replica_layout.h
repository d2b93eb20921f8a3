// Which ranks form the replicas of an outer optimizer (docs/outer.md,
// docs/elastic.md "Outer optimizers").
//
// Every worker belongs to a logical replica for the job's life. The ranks of a
// replica train one model together (synchronous data parallelism inside it);
// replicas meet only in the outer optimizer's exchanges. At the start W ranks
// form R replicas of W/R consecutive ranks. In an elastic job a replica lives
// while any of its workers does; a replacement joins the living replica with
// the fewest members (the lowest logical id on ties); a replica whose workers
// were all lost is gone, and the living ones share the global batch.
#pragma once

#include <vector>

namespace loom::train {

struct ReplicaLayout {
  int replicas = 1;          ///< living replicas
  int replica = 0;           ///< this rank's, 0 .. replicas - 1 in logical-id order
  int logical = 0;           ///< this rank's logical replica id
  std::vector<int> members;  ///< ranks of this rank's replica, ascending; members[0] leads it
  std::vector<int> leaders;  ///< every replica's leader, by replica index
  std::vector<int> sizes;    ///< every replica's member count, by replica index
  int position = 0;          ///< this rank's index in members

  bool leader() const { return position == 0; }
};

/// The logical replica of each of `world` ranks at the start: rank / (world / replicas).
/// REQUIRES: replicas divides world.
std::vector<int> initialReplicas(int world, int replicas);

/// `replica_of` with every -1 (a joiner) replaced, in rank order, by the
/// living replica with the fewest members (lowest logical id on ties).
/// REQUIRES: some entry is not -1.
std::vector<int> assignJoiners(std::vector<int> replica_of);

/// The layout seen by `rank`, given every rank's logical replica (none -1).
ReplicaLayout replicaLayout(const std::vector<int>& replica_of, int rank);

}  // namespace loom::train
