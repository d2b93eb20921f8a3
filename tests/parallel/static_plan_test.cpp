// The static dp x cp baseline's planner (parallel/static_plan.h).
#include "parallel/static_plan.h"

#include "runtime/core/error.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace loom::parallel {
namespace {

TEST(StaticPlanTest, RowsHoldEverySequenceOnceWithinTheRowCapacity) {
  const std::vector<int64_t> lengths = {300, 20, 250, 90, 90, 7, 400, 1, 33};
  const StaticPlan plan = planStatic(lengths, 4, 2, 200);  // dp 2 groups of 2; rows of <= 400 tokens
  std::vector<int64_t> seen;
  for (const StaticRow& row : plan.rows) {
    int64_t tokens = 0;
    for (int64_t i : row.sequences) tokens += lengths[static_cast<size_t>(i)];
    EXPECT_EQ(tokens, row.tokens);
    EXPECT_LE(row.tokens, 400);
    EXPECT_TRUE(row.first_rank == 0 || row.first_rank == 2) << row.first_rank;
    seen.insert(seen.end(), row.sequences.begin(), row.sequences.end());
  }
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < lengths.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i));
  EXPECT_EQ(seen.size(), lengths.size());
  EXPECT_EQ(plan.global_tokens, 1191);
  // Ranks of a group share its cost.
  EXPECT_EQ(plan.rank_cost[0], plan.rank_cost[1]);
  EXPECT_EQ(plan.rank_cost[2], plan.rank_cost[3]);
  EXPECT_GE(plan.imbalance(), 1.0);
}

TEST(StaticPlanTest, TheMeshIsSizedForTheLongestSequence) {
  EXPECT_EQ(staticCp(4096, 1024), 4);
  EXPECT_EQ(staticCp(1000, 1024), 1);
  EXPECT_EQ(staticCp(3000, 1024), 4);
}

TEST(StaticPlanTest, RejectsWhatDoesNotFit) {
  EXPECT_THROW(planStatic({10}, 4, 3, 100), InputError);   // cp not a power of two
  EXPECT_THROW(planStatic({10}, 6, 4, 100), InputError);   // cp does not divide the pool
  EXPECT_THROW(planStatic({401}, 4, 2, 200), InputError);  // longer than cp x capacity
  EXPECT_THROW(planStatic({10}, 4, 2, 0), InputError);
}

}  // namespace
}  // namespace loom::parallel
