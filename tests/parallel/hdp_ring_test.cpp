// Many HDP steps with ring attention over the cached groups, ranks as threads
// (parallel_elastic.md §6 test 9): 1,000 random steps of random-length batches,
// the groups changing every wave, complete without deadlock (every Gloo wait
// is bounded by the test's 30 s operation timeout, so a deadlock fails the
// test naming the operation and ranks instead of hanging it), and every
// rank's attention output stays finite. Takes about a minute on 2 cores.
#include "parallel/group_cache.h"
#include "parallel/hdp_plan.h"
#include "parallel/ring_attention.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <iostream>

namespace loom::parallel {
namespace {

// splitmix64: the same batches on every rank (and platform) without communication.
uint64_t next(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

TEST(HdpRingTest, AThousandRandomStepsCompleteWithoutDeadlock) {
  constexpr int kPool = 4;
  constexpr int kSteps = 1000;
  const auto start = std::chrono::steady_clock::now();
  loom::test::runRanks(kPool, [&](int rank, dist::Communicator& comm) {
    GroupCache groups(comm);
    uint64_t state = 42;
    int64_t group_runs = 0;
    for (int step = 0; step < kSteps; ++step) {
      std::vector<int64_t> lengths(1 + next(state) % 10);
      for (int64_t& l : lengths) l = 1 + static_cast<int64_t>(next(state) % 64);
      const HdpPlan plan = planHdp(lengths, HdpOptions{kPool, 16});
      for (const Wave& wave : plan.waves) {
        for (const Placement& p : wave.placements) {
          if (rank < p.first_rank || rank >= p.first_rank + p.ranks) continue;
          const int64_t share = static_cast<int64_t>(zigzagIndices(lengths[static_cast<size_t>(p.sequence)], p.ranks,
                                                                   rank - p.first_rank)
                                                         .size());
          at::Tensor q = at::randn({1, share, 2, 8}).requires_grad_(true);
          const at::Tensor kv = at::randn({1, share, 1, 8});
          const TokenLayout layout =
              zigzagLayout(lengths[static_cast<size_t>(p.sequence)], p.ranks, rank - p.first_rank);
          const at::Tensor out = ringAttention(q, kv, kv, layout, groups.group(p.first_rank, p.ranks));
          out.sum().backward();
          ASSERT_TRUE(at::isfinite(out).all().item<bool>() && at::isfinite(q.grad()).all().item<bool>())
              << "step " << step;
          group_runs += p.ranks > 1 ? 1 : 0;
        }
      }
      // The step's one reduction over the whole pool.
      at::Tensor done = at::ones({1});
      comm.allReduce(done, dist::ReduceOp::kSum)->wait();
      ASSERT_EQ(done.item<float>(), kPool);
    }
    EXPECT_GT(group_runs, 100) << "rank " << rank << ": context-parallel groups should occur often";
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ hdp      ] 1000 random steps on 4 ranks: " << seconds << " s\n";
}

}  // namespace
}  // namespace loom::parallel
