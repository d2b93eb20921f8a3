#include "parallel/bucket_plan.h"

#include "runtime/core/error.h"

namespace loom::parallel {

BucketPlan makeBucketPlan(const std::vector<int64_t>& numels, int64_t element_bytes, int64_t bucket_bytes,
                          int shards) {
  LOOM_CHECK(bucket_bytes >= 1 && shards >= 1 && element_bytes >= 1, "makeBucketPlan: bad arguments");
  BucketPlan plan;
  plan.where.resize(numels.size());
  Bucket current;
  current.shards = shards;
  int64_t current_bytes = 0;
  auto close = [&] {
    if (current.slots.empty()) return;
    plan.buckets.push_back(current);
    current = Bucket{};
    current.shards = shards;
    current_bytes = 0;
  };
  for (int i = static_cast<int>(numels.size()) - 1; i >= 0; --i) {
    const int64_t n = numels[static_cast<size_t>(i)];
    LOOM_CHECK(n >= 1, "makeBucketPlan: parameter ", i, " has no elements");
    const int64_t bytes = n * element_bytes;
    if (!current.slots.empty() && current_bytes + bytes > bucket_bytes) close();
    ParamSlot slot;
    slot.param = i;
    slot.numel = n;
    slot.chunk = (n + shards - 1) / shards;
    slot.offset = current.segment;
    current.segment += slot.chunk;
    current_bytes += bytes;
    plan.where[static_cast<size_t>(i)] = {static_cast<int>(plan.buckets.size()),
                                          static_cast<int>(current.slots.size())};
    current.slots.push_back(slot);
  }
  close();
  return plan;
}

}  // namespace loom::parallel
