#include "parallel/bucket_plan.h"

#include <gtest/gtest.h>

#include <numeric>
#include <set>

namespace loom::parallel {
namespace {

TEST(BucketPlanTest, TheDocumentedWorkedExample) {
  // W = 2, bucket {a: 5 elements, b: 2 elements}: c_a = 3, c_b = 1, S = 4 (bucket_plan.h).
  // Parameters are taken in reverse order, so list them as {b, a}.
  const BucketPlan plan = makeBucketPlan({2, 5}, 4, 1 << 20, 2);
  ASSERT_EQ(plan.buckets.size(), 1u);
  const Bucket& bucket = plan.buckets[0];
  EXPECT_EQ(bucket.segment, 4);
  EXPECT_EQ(bucket.elements(), 8);
  ASSERT_EQ(bucket.slots.size(), 2u);
  EXPECT_EQ(bucket.slots[0].param, 1);  // a
  EXPECT_EQ(bucket.slots[0].chunk, 3);
  EXPECT_EQ(bucket.slots[0].offset, 0);
  EXPECT_EQ(bucket.slots[1].param, 0);  // b
  EXPECT_EQ(bucket.slots[1].chunk, 1);
  EXPECT_EQ(bucket.slots[1].offset, 3);
}

TEST(BucketPlanTest, BucketsFillUpToTheByteLimitInReverseOrder) {
  // 4-byte elements, 100-byte buckets: params of 10, 10, 30, 5, 5 elements (40, 40, 120, 20, 20 bytes).
  const BucketPlan plan = makeBucketPlan({10, 10, 30, 5, 5}, 4, 100, 1);
  ASSERT_EQ(plan.buckets.size(), 3u);
  EXPECT_EQ(plan.buckets[0].slots.size(), 2u);  // params 4, 3 (40 bytes)
  EXPECT_EQ(plan.buckets[1].slots.size(), 1u);  // param 2 alone (120 bytes > limit)
  EXPECT_EQ(plan.buckets[2].slots.size(), 2u);  // params 1, 0
  EXPECT_EQ(plan.buckets[1].slots[0].param, 2);
  EXPECT_EQ(plan.where[2], std::make_pair(1, 0));
  EXPECT_EQ(plan.where[0], std::make_pair(2, 1));
}

// Every element of every parameter has exactly one place in the sharded buffer,
// and rank r's segment holds exactly the elements [r*c, (r+1)*c) of each parameter.
TEST(BucketPlanTest, ShardedLayoutCoversEveryElementOnceForSmallWorlds) {
  const std::vector<int64_t> numels = {1, 7, 16, 5, 33, 2, 64, 3};
  for (int world = 1; world <= 5; ++world) {
    for (int64_t bucket_bytes : {4, 40, 400, 4000}) {
      const BucketPlan plan = makeBucketPlan(numels, 4, bucket_bytes, world);
      std::set<std::pair<int, int64_t>> seen;
      for (const Bucket& bucket : plan.buckets) {
        int64_t segment = 0;
        for (const ParamSlot& slot : bucket.slots) {
          EXPECT_EQ(slot.offset, segment);
          EXPECT_EQ(slot.chunk, (slot.numel + world - 1) / world);
          segment += slot.chunk;
          for (int r = 0; r < world; ++r) {
            for (int64_t k = 0; k < slot.chunk; ++k) {
              const int64_t element = r * slot.chunk + k;  // at buffer index r * S + offset + k
              if (element < slot.numel) {
                EXPECT_TRUE(seen.insert({slot.param, element}).second);
              }
            }
          }
        }
        EXPECT_EQ(bucket.segment, segment);
      }
      EXPECT_EQ(static_cast<int64_t>(seen.size()), std::accumulate(numels.begin(), numels.end(), int64_t{0}))
          << "world " << world << " bucket_bytes " << bucket_bytes;
    }
  }
}

}  // namespace
}  // namespace loom::parallel
