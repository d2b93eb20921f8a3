#include "train/replica_layout.h"

#include "runtime/core/error.h"

#include <algorithm>
#include <map>

namespace loom::train {

std::vector<int> initialReplicas(int world, int replicas) {
  LOOM_CHECK(replicas >= 1 && world % replicas == 0, replicas, " replicas do not divide ", world, " ranks");
  std::vector<int> replica_of(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) replica_of[static_cast<size_t>(r)] = r / (world / replicas);
  return replica_of;
}

std::vector<int> assignJoiners(std::vector<int> replica_of) {
  std::map<int, int> members;  // living logical replica -> members
  for (int id : replica_of) {
    if (id >= 0) ++members[id];
  }
  LOOM_CHECK(!members.empty(), "no replica has a member left to join");
  for (int& id : replica_of) {
    if (id >= 0) continue;
    const auto smallest = std::min_element(members.begin(), members.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
    id = smallest->first;
    ++smallest->second;
  }
  return replica_of;
}

ReplicaLayout replicaLayout(const std::vector<int>& replica_of, int rank) {
  LOOM_CHECK(rank >= 0 && rank < static_cast<int>(replica_of.size()), "rank ", rank, " outside ", replica_of.size());
  std::map<int, std::vector<int>> by_logical;  // ordered by logical id
  for (int r = 0; r < static_cast<int>(replica_of.size()); ++r) {
    LOOM_CHECK(replica_of[static_cast<size_t>(r)] >= 0, "rank ", r, " has no replica");
    by_logical[replica_of[static_cast<size_t>(r)]].push_back(r);
  }
  ReplicaLayout layout;
  layout.replicas = static_cast<int>(by_logical.size());
  layout.logical = replica_of[static_cast<size_t>(rank)];
  int index = 0;
  for (const auto& [logical, ranks] : by_logical) {
    layout.leaders.push_back(ranks.front());
    layout.sizes.push_back(static_cast<int>(ranks.size()));
    if (logical == layout.logical) {
      layout.replica = index;
      layout.members = ranks;
      layout.position = static_cast<int>(std::find(ranks.begin(), ranks.end(), rank) - ranks.begin());
    }
    ++index;
  }
  return layout;
}

}  // namespace loom::train
