// assembleShardedState: elastic recovery rebuilds the full optimizer state from
// the ZeRO-1 shards of a world that no longer exists (parallel/bucket_plan.h:
// parameter p's chunk r is elements [r c, (r + 1) c) of the flattened tensor,
// c = ceil(n / W), the last chunk zero padded). Reference: slicing by hand.
#include "optim/parameter_optimizer.h"

#include "runtime/core/error.h"
#include "tests/support/error_of.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::optim {
namespace {

using ::testing::HasSubstr;

NamedTensors shardOf(const NamedTensors& full, int rank, int world) {
  NamedTensors shard;
  for (const auto& [name, t] : full) {
    const int64_t n = t.numel();
    const int64_t chunk = (n + world - 1) / world;
    at::Tensor piece = at::zeros({chunk}, t.options());
    const int64_t begin = std::min<int64_t>(n, rank * chunk);
    const int64_t end = std::min<int64_t>(n, begin + chunk);
    if (end > begin) piece.narrow(0, 0, end - begin).copy_(t.reshape({-1}).narrow(0, begin, end - begin));
    // Matrices' chunks are viewed [1, chunk] by the sharded optimizer.
    shard.emplace_back(name, t.dim() >= 2 ? piece.unsqueeze(0) : piece);
  }
  return shard;
}

TEST(ShardedStateTest, ReassemblesTheFullStateFromEveryWorldSize) {
  const NamedTensors params = {{"w", at::zeros({5, 3})}, {"b", at::zeros({7})}, {"tiny", at::zeros({2})}};
  NamedTensors full;
  for (const char* prefix : {"exp_avg.", "exp_avg_sq."}) {
    for (const auto& [name, p] : params) full.emplace_back(prefix + name, at::randn(p.sizes()));
  }
  for (const int world : {1, 2, 3, 4, 7}) {
    std::vector<NamedTensors> shards;
    for (int r = 0; r < world; ++r) shards.push_back(shardOf(full, r, world));
    const NamedTensors assembled = assembleShardedState(params, shards);
    ASSERT_EQ(assembled.size(), full.size());
    for (const auto& [name, t] : full) {
      const auto it = std::find_if(assembled.begin(), assembled.end(), [&](const auto& e) { return e.first == name; });
      ASSERT_NE(it, assembled.end()) << name;
      EXPECT_TRUE(at::equal(it->second, t)) << name << " world " << world;
    }
  }
}

TEST(ShardedStateTest, AMissingOrMisSizedChunkIsNamed) {
  const NamedTensors params = {{"b", at::zeros({7})}};
  std::vector<NamedTensors> shards = {{{"exp_avg.b", at::zeros({4})}, {"exp_avg_sq.b", at::zeros({4})}},
                                      {{"exp_avg.b", at::zeros({3})}, {"exp_avg_sq.b", at::zeros({4})}}};
  EXPECT_THAT(loom::test::errorOf<InputError>([&] { assembleShardedState(params, shards); }),
              HasSubstr("optimizer shard of rank 1 of 2 lacks exp_avg.b with 4 elements"));
}

}  // namespace
}  // namespace loom::optim
