// NoLoCo and CO2 on real ranks against closed forms and DiLoCo
// (../shared/reference/optimizers.md §7, tests 17-19 and 22).
#include "optim/outer/codec.h"
#include "optim/outer/outer_optimizer.h"
#include "optim/outer/pairing.h"
#include "tests/optim/outer_test_util.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace loom::optim::outer {
namespace {

using test::flatOf;
using test::gatherAll;
using test::identicalOnAllRanks;
using test::noloco;
using test::setFlat;
using test::smallParams;
using test::splitAll;

// Test 17: with momentum 0 the consensus pulls cancel over each group, so the
// mean of the outer weights over all replicas moves by exactly lr times the
// mean local progress, like DiLoCo with heavy-ball momentum 0.
TEST(NoLoCoTest, ConsensusTermsCancelAndTheMeanMovesLikeDiLoCo) {
  loom::test::runRanks(4, [](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(31 + rank);  // replicas start apart
    auto outer_comm = splitAll(comm);
    auto outer = makeOuterOptimizer(params, *outer_comm, noloco(2, 0.7, 0.0, 0.5, 2), 77);
    const at::Generator gen = at::detail::createCPUGenerator(500 + rank);
    for (int64_t step = 1; step <= 6; ++step) {
      const at::Tensor phi_before = outer->stateTensors()[0].second.clone();
      setFlat(params, flatOf(params) + at::randn({17}, gen) * 0.1);
      const at::Tensor theta = flatOf(params);
      outer->afterInnerStep(step);
      if (step % 2 != 0) continue;
      const at::Tensor phi_after = outer->stateTensors()[0].second;
      const at::Tensor mean_before = at::stack(gatherAll(comm, phi_before)).mean(0);
      const at::Tensor mean_after = at::stack(gatherAll(comm, phi_after)).mean(0);
      const at::Tensor mean_progress = at::stack(gatherAll(comm, theta - phi_before)).mean(0);
      EXPECT_TRUE(at::allclose(mean_after, mean_before + 0.7 * mean_progress, 1e-5, 1e-6)) << "step " << step;
      EXPECT_TRUE(at::equal(flatOf(params), phi_after));
    }
  });
}

// Test 18: momentum 0 and lr = consensus = 1 leave both partners at the mean
// of their local weights.
TEST(NoLoCoTest, UnitRatesCollapseAPairToItsMean) {
  loom::test::runRanks(4, [](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(41 + rank);
    auto outer_comm = splitAll(comm);
    auto outer = makeOuterOptimizer(params, *outer_comm, noloco(1, 1.0, 0.0, 1.0, 2), 5);
    const at::Generator gen = at::detail::createCPUGenerator(600 + rank);
    setFlat(params, flatOf(params) + at::randn({17}, gen));
    const std::vector<at::Tensor> locals = gatherAll(comm, flatOf(params));
    outer->afterInnerStep(1);
    const std::vector<int> group = groupOf(5, 1, 4, 2, rank);
    const at::Tensor pair_mean = (locals[group[0]] + locals[group[1]]) / 2;
    EXPECT_TRUE(at::allclose(flatOf(params), pair_mean, 1e-6, 1e-6));
  });
}

// Test 18: one group holding every replica from a common start is DiLoCo with heavy-ball momentum.
TEST(NoLoCoTest, OneGroupOfAllIsHeavyBallDiLoCo) {
  loom::test::runRanks(4, [](int rank, dist::Communicator& comm) {
    const NamedTensors a = smallParams(51);
    const NamedTensors b = smallParams(51);
    auto comm_a = splitAll(comm);
    auto comm_b = splitAll(comm);
    auto nol = makeOuterOptimizer(a, *comm_a, noloco(2, 0.7, 0.5, 0.7, 4), 9);
    auto dil = makeOuterOptimizer(b, *comm_b, test::diloco(2, 0.7, 0.5, /*nesterov=*/false), 9);
    for (int64_t step = 1; step <= 8; ++step) {
      const at::Generator gen = at::detail::createCPUGenerator(700 + 10 * rank + step);
      const at::Tensor update = at::randn({17}, gen) * 0.1;
      setFlat(a, flatOf(a) + update);
      setFlat(b, flatOf(b) + update);
      nol->afterInnerStep(step);
      dil->afterInnerStep(step);
      EXPECT_TRUE(at::allclose(flatOf(a), flatOf(b), 1e-5, 1e-6)) << "step " << step;
    }
  });
}

// Test 19: each replica sends the same bytes per sync whatever the number of
// replicas, issues no collective, and keeps its own momentum.
TEST(NoLoCoTest, TrafficIsConstantInReplicasAndUsesNoCollective) {
  std::vector<int64_t> sent_per_sync;
  for (int k : {2, 4, 8}) {
    std::vector<int64_t> sent(static_cast<size_t>(k));
    loom::test::runRanks(k, [&](int rank, dist::Communicator& comm) {
      const NamedTensors params = smallParams(61 + rank);
      auto outer_comm = splitAll(comm);
      auto outer = makeOuterOptimizer(params, *outer_comm, noloco(3, 0.7, 0.5, 0.7, 2), 11);
      const at::Generator gen = at::detail::createCPUGenerator(800 + rank);
      for (int64_t step = 1; step <= 6; ++step) {
        setFlat(params, flatOf(params) + at::randn({17}, gen));
        outer->afterInnerStep(step);
      }
      EXPECT_EQ(outer_comm->collectivesIssued(), 0u);
      sent[static_cast<size_t>(rank)] = outer_comm->bytesSent() / 2;  // two syncs
      EXPECT_FALSE(identicalOnAllRanks(comm, outer->stateTensors()[1].second)) << "momentum is per replica";
    });
    for (int64_t s : sent) sent_per_sync.push_back(s);
  }
  // A pair splits [phi ; theta - phi] (34 values) into two chunks of 17: each
  // replica sends the other's chunk in, then its averaged chunk back out.
  for (int64_t s : sent_per_sync) EXPECT_EQ(s, 2 * encodedBytes(PseudoGradientCodec::kFp32, 17));
}

// Test 22: CO2 with penalty 1, no clip, momentum 0 and lr 1 follows exactly
// the trajectory of delayed (async) DiLoCo with lr 1 and momentum 0.
TEST(Co2Test, WithoutPenaltyClipAndMomentumItIsAsyncDiLoCo) {
  loom::test::runRanks(3, [](int rank, dist::Communicator& comm) {
    const NamedTensors a = smallParams(71);
    const NamedTensors b = smallParams(71);
    auto comm_a = splitAll(comm);
    auto comm_b = splitAll(comm);
    OuterOptions co2;
    co2.algorithm = OuterAlgorithm::kCo2;
    co2.sync_every = 2;
    co2.lr = 1.0;
    co2.momentum = 0.0;
    co2.staleness_penalty = 1.0;
    co2.clip = 0;
    OuterOptions async_diloco = test::diloco(2, 1.0, 0.0);
    async_diloco.delayed = true;
    auto x = makeOuterOptimizer(a, *comm_a, co2, 0);
    auto y = makeOuterOptimizer(b, *comm_b, async_diloco, 0);
    for (int64_t step = 1; step <= 10; ++step) {
      const at::Generator gen = at::detail::createCPUGenerator(900 + 10 * rank + step);
      const at::Tensor update = at::randn({17}, gen) * 0.1;
      setFlat(a, flatOf(a) + update);
      setFlat(b, flatOf(b) + update);
      x->afterInnerStep(step);
      y->afterInnerStep(step);
      EXPECT_TRUE(at::equal(flatOf(a), flatOf(b))) << "step " << step;
    }
  });
}

// Traffic: CO2 starts one ring-sized average per round, at the round's end;
// it travels (on a background thread) while the next round computes, so at any
// step the bytes sent lie between the rounds completed and the rounds started.
TEST(Co2Test, OneAveragePerRoundAndNothingElse) {
  loom::test::runRanks(2, [](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(91);
    auto outer_comm = splitAll(comm);
    OuterOptions co2;
    co2.algorithm = OuterAlgorithm::kCo2;
    co2.sync_every = 3;
    auto outer = makeOuterOptimizer(params, *outer_comm, co2, 0);
    const at::Generator gen = at::detail::createCPUGenerator(950 + rank);
    // Chunks of 8 and 9 values: each rank sends the other's chunk in and its own averaged one back out.
    const int64_t per_round = 4 * (8 + 9);
    for (int64_t step = 1; step <= 9; ++step) {
      setFlat(params, flatOf(params) + at::randn({17}, gen) * 0.1);
      outer->afterInnerStep(step);
      const int64_t started = step / 3;  // a round end waits for the previous round's average first
      EXPECT_LE(outer_comm->bytesSent(), started * per_round) << "step " << step;
      EXPECT_GE(outer_comm->bytesSent(), std::max<int64_t>(0, started - 1) * per_round) << "step " << step;
    }
    outer->finish();
    EXPECT_EQ(outer_comm->bytesSent(), 3 * per_round);
    EXPECT_EQ(outer_comm->collectivesIssued(), 0u);
  });
}

// CO2 through the optimizer: the staleness penalty halves the outer step and
// the clip bounds it, on real ranks with the delayed schedule.
TEST(Co2Test, PenaltyAndClipShapeTheDelayedOuterStep) {
  for (double penalty : {1.0, 2.0}) {
    loom::test::runRanks(2, [penalty](int, dist::Communicator& comm) {
      const NamedTensors params = smallParams(81);
      const at::Tensor start = flatOf(params);
      auto outer_comm = splitAll(comm);
      OuterOptions co2;
      co2.algorithm = OuterAlgorithm::kCo2;
      co2.sync_every = 1;
      co2.lr = 1.0;
      co2.momentum = 0.0;
      co2.staleness_penalty = penalty;
      co2.clip = 0.3;
      auto outer = makeOuterOptimizer(params, *outer_comm, co2, 0);
      setFlat(params, start + 0.2);  // round 1: D_1 = -0.2, nothing applied yet
      outer->afterInnerStep(1);
      EXPECT_TRUE(at::equal(flatOf(params), start));
      setFlat(params, start + 1.0);  // round 2: applies D_1 / penalty
      outer->afterInnerStep(2);
      EXPECT_TRUE(at::allclose(flatOf(params), start + 0.2 / penalty, 0, 1e-6));
      outer->finish();  // applies D_2 = -1, clipped to -0.3
      EXPECT_TRUE(at::allclose(flatOf(params), start + 0.2 / penalty + 0.3, 0, 1e-6));
    });
  }
}

}  // namespace
}  // namespace loom::optim::outer
