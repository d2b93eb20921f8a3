// Replica layouts (train/replica_layout.h): the starting split, joiners filling
// the smallest living replica, and what a rank sees after replicas shrank or vanished.
#include "train/replica_layout.h"

#include <gtest/gtest.h>

namespace loom::train {
namespace {

TEST(ReplicaLayoutTest, StartsWithConsecutiveRanks) {
  EXPECT_EQ(initialReplicas(4, 2), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(initialReplicas(3, 3), (std::vector<int>{0, 1, 2}));
  const ReplicaLayout layout = replicaLayout(initialReplicas(6, 2), 4);
  EXPECT_EQ(layout.replicas, 2);
  EXPECT_EQ(layout.replica, 1);
  EXPECT_EQ(layout.members, (std::vector<int>{3, 4, 5}));
  EXPECT_EQ(layout.leaders, (std::vector<int>{0, 3}));
  EXPECT_EQ(layout.position, 1);
  EXPECT_FALSE(layout.leader());
}

TEST(ReplicaLayoutTest, JoinersFillTheSmallestLivingReplica) {
  // Logical replica 1 lost a worker, replica 2 lost all of its: the first
  // joiner goes to 1, the next two alternate starting from the lowest id.
  EXPECT_EQ(assignJoiners({0, 0, 1, -1, -1, -1}), (std::vector<int>{0, 0, 1, 1, 0, 1}));
}

TEST(ReplicaLayoutTest, VanishedReplicasAreSkippedAndIndicesStayDense) {
  // Logical replicas 0 and 3 live (1 and 2 vanished); replica 3 has one member left.
  const std::vector<int> replica_of = {0, 0, 3};
  const ReplicaLayout lone = replicaLayout(replica_of, 2);
  EXPECT_EQ(lone.replicas, 2);
  EXPECT_EQ(lone.replica, 1);
  EXPECT_EQ(lone.logical, 3);
  EXPECT_EQ(lone.members, (std::vector<int>{2}));
  EXPECT_TRUE(lone.leader());
  EXPECT_EQ(lone.leaders, (std::vector<int>{0, 2}));
  EXPECT_EQ(lone.sizes, (std::vector<int>{2, 1}));
  EXPECT_EQ(replicaLayout(replica_of, 1).position, 1);
}

}  // namespace
}  // namespace loom::train
