// DiLoCo against closed forms and independent references
// (../shared/reference/optimizers.md §7, tests 1-3, 5-8, 10, 11).
#include "optim/outer/codec.h"
#include "optim/outer/outer_optimizer.h"
#include "runtime/core/error.h"
#include "tests/optim/outer_test_util.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace loom::optim::outer {
namespace {

using test::diloco;
using test::flatOf;
using test::gatherAll;
using test::identicalOnAllRanks;
using test::setFlat;
using test::smallParams;
using test::splitAll;

// Test 1: with lr 1 and momentum 0, a sync leaves every replica at the mean of
// the replicas' weights, whatever happened locally in between.
TEST(DiLoCoTest, SyncWithUnitLrAndNoMomentumAveragesTheReplicas) {
  loom::test::runRanks(3, [](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(7);  // the same start on every replica
    auto outer_comm = splitAll(comm);
    auto outer = makeOuterOptimizer(params, *outer_comm, diloco(3, 1.0, 0.0), 0);
    const at::Generator gen = at::detail::createCPUGenerator(100 + rank);
    for (int64_t step = 1; step <= 9; ++step) {
      setFlat(params, flatOf(params) + at::randn({17}, gen) * 0.1);  // any local update
      const at::Tensor before = flatOf(params);
      outer->afterInnerStep(step);
      const at::Tensor after = flatOf(params);
      if (step % 3 != 0) {
        ASSERT_TRUE(at::equal(before, after)) << "step " << step << " is between syncs";
        continue;
      }
      const at::Tensor mean = at::stack(gatherAll(comm, before)).mean(0);
      EXPECT_TRUE(at::allclose(after, mean, 1e-6, 1e-6)) << "step " << step;
      EXPECT_TRUE(identicalOnAllRanks(comm, after));
    }
    EXPECT_EQ(outer->stats().syncs, 3);
  });
}

// Test 2: H = 1, inner plain SGD, lr 1, momentum 0 is data-parallel SGD on the
// averaged gradient. Replica r minimises 0.5 * ||theta - c_r||^2, gradient theta - c_r.
TEST(DiLoCoTest, EveryStepSyncWithSgdIsDataParallelSgd) {
  constexpr int kReplicas = 4;
  constexpr double kLr = 0.3;
  const auto target = [](int r) { return at::arange(17, at::kDouble) * (r + 1) - 2.0 * r; };
  // Reference: one process, SGD on the mean of the four gradients, in double.
  at::Tensor reference = flatOf(smallParams(3)).to(at::kDouble);
  std::vector<at::Tensor> trajectory;
  for (int step = 0; step < 5; ++step) {
    at::Tensor grad = at::zeros_like(reference);
    for (int r = 0; r < kReplicas; ++r) grad += (reference - target(r)) / kReplicas;
    reference = reference - kLr * grad;
    trajectory.push_back(reference.clone());
  }
  loom::test::runRanks(kReplicas, [&](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(3);
    auto outer_comm = splitAll(comm);
    auto outer = makeOuterOptimizer(params, *outer_comm, diloco(1, 1.0, 0.0), 0);
    for (int step = 1; step <= 5; ++step) {
      const at::Tensor theta = flatOf(params);
      setFlat(params, theta - kLr * (theta - target(rank).to(at::kFloat)));
      outer->afterInnerStep(step);
      EXPECT_TRUE(at::allclose(flatOf(params).to(at::kDouble), trajectory[step - 1], 1e-5, 1e-6)) << "step " << step;
    }
  });
}

// Test 3: one replica. lr 1, momentum 0: the sync changes nothing. Default
// Nesterov (0.7, 0.9): the first sync moves 1.9 * 0.7 = 1.33 times the local progress.
TEST(DiLoCoTest, OneReplica) {
  const NamedTensors params = smallParams(5);
  const at::Tensor start = flatOf(params);
  auto self = dist::makeSelfCommunicator();
  auto identity = makeOuterOptimizer(params, *self, diloco(2, 1.0, 0.0), 0);
  setFlat(params, start + 1.0);
  identity->afterInnerStep(1);
  setFlat(params, start + 3.0);
  identity->afterInnerStep(2);
  EXPECT_TRUE(at::equal(flatOf(params), start + 3.0));

  const NamedTensors fresh = smallParams(5);
  OuterOptions defaults;
  defaults.algorithm = OuterAlgorithm::kDiLoCo;
  defaults.sync_every = 2;
  auto nesterov = makeOuterOptimizer(fresh, *self, defaults, 0);
  const at::Tensor theta_h = start - at::linspace(-1, 1, 17);
  setFlat(fresh, theta_h);
  nesterov->afterInnerStep(1);
  nesterov->afterInnerStep(2);
  EXPECT_TRUE(at::allclose(flatOf(fresh), start - 1.33 * (start - theta_h), 1e-6, 1e-6));
}

// Test 5: replicas that all moved up by 2 produce an outer step up by 2 (lr 1,
// momentum 0): a local move in some direction is an outer move the same way.
TEST(DiLoCoTest, PseudoGradientSignFollowsTheLocalMove) {
  loom::test::runRanks(2, [](int, dist::Communicator& comm) {
    const NamedTensors params = smallParams(9);
    const at::Tensor start = flatOf(params);
    auto outer_comm = splitAll(comm);
    auto outer = makeOuterOptimizer(params, *outer_comm, diloco(1, 1.0, 0.0), 0);
    setFlat(params, start + 2.0);
    outer->afterInnerStep(1);
    const at::Tensor global = outer->stateTensors()[0].second;
    EXPECT_TRUE(at::allclose(global, start + 2.0, 0, 1e-6));
    EXPECT_TRUE(at::allclose(flatOf(params), start + 2.0, 0, 1e-6));
  });
}

// Test 6: with lossy codecs every replica ends each sync with byte-identical
// global weights, momentum and parameters.
TEST(DiLoCoTest, LossyCodecsLeaveReplicasByteIdentical) {
  for (PseudoGradientCodec codec : {PseudoGradientCodec::kFp16, PseudoGradientCodec::kBf16,
                                    PseudoGradientCodec::kUint8MinMax, PseudoGradientCodec::kUint8Lut}) {
    SCOPED_TRACE(codecName(codec));
    loom::test::runRanks(3, [codec](int rank, dist::Communicator& comm) {
      const NamedTensors params = smallParams(11);
      auto outer_comm = splitAll(comm);
      OuterOptions opts = diloco(2, 0.7, 0.9);
      opts.codec = codec;
      auto outer = makeOuterOptimizer(params, *outer_comm, opts, 0);
      const at::Generator gen = at::detail::createCPUGenerator(200 + rank);
      for (int64_t step = 1; step <= 8; ++step) {
        setFlat(params, flatOf(params) + at::randn({17}, gen) * 0.01);
        outer->afterInnerStep(step);
        if (step % 2 != 0) continue;
        for (const auto& [name, t] : outer->stateTensors()) EXPECT_TRUE(identicalOnAllRanks(comm, t)) << name;
        EXPECT_TRUE(identicalOnAllRanks(comm, flatOf(params)));
      }
    });
  }
}

// Bytes one rank sends in a group average of n fp32 values over g ranks:
// the others' chunks on the way in, its own chunk g - 1 times on the way out.
int64_t averageBytesSent(PseudoGradientCodec codec, int64_t n, int g, int rank) {
  int64_t bytes = 0;
  for (int j = 0; j < g; ++j) {
    const int64_t chunk = (j + 1) * n / g - j * n / g;
    bytes += j == rank ? (g - 1) * encodedBytes(codec, chunk) : encodedBytes(codec, chunk);
  }
  return bytes;
}

// Test 7: nothing moves between syncs; a sync sends what the ring volume
// says; per inner step DiLoCo sends 1/H of data parallelism's fp32 all-reduce
// volume, and 1/(4H) with 8-bit pseudo-gradients (400x at H = 100).
TEST(DiLoCoTest, TrafficIsOneRingAveragePerSync) {
  constexpr int kReplicas = 2;
  constexpr int64_t kH = 100;
  constexpr int64_t kNumel = 1 << 20;
  for (PseudoGradientCodec codec : {PseudoGradientCodec::kFp32, PseudoGradientCodec::kUint8Lut}) {
    SCOPED_TRACE(codecName(codec));
    loom::test::runRanks(kReplicas, [codec](int rank, dist::Communicator& comm) {
      const NamedTensors params{{"w", at::zeros({kNumel})}};
      auto outer_comm = splitAll(comm);
      OuterOptions opts = diloco(kH, 0.7, 0.9);
      opts.codec = codec;
      auto outer = makeOuterOptimizer(params, *outer_comm, opts, 0);
      const uint64_t collectives = outer_comm->collectivesIssued();
      for (int64_t step = 1; step < kH; ++step) {
        params[0].second.add_(0.001);
        outer->afterInnerStep(step);
      }
      EXPECT_EQ(outer_comm->bytesSent(), 0) << "bytes moved between syncs";
      EXPECT_EQ(outer_comm->bytesReceived(), 0);
      outer->afterInnerStep(kH);
      const int64_t expected = averageBytesSent(codec, kNumel, kReplicas, rank);
      EXPECT_EQ(outer_comm->bytesSent(), expected);
      EXPECT_EQ(outer_comm->collectivesIssued(), collectives) << "the average uses point-to-point messages only";
      // Data parallelism all-reduces the fp32 gradient every step: 2 (k-1)/k * 4 N bytes.
      const double dp_per_step = 2.0 * (kReplicas - 1) / kReplicas * 4.0 * kNumel;
      const double ratio = dp_per_step / (static_cast<double>(outer_comm->bytesSent()) / kH);
      const double want = codec == PseudoGradientCodec::kFp32 ? kH : 4.0 * kH;
      EXPECT_NEAR(ratio, want, want * 0.01);
    });
  }
}

// Test 8: the outer step never touches the inner optimizer's state.
TEST(DiLoCoTest, InnerOptimizerStateIsUntouchedBySyncs) {
  loom::test::runRanks(2, [](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(13);
    OptimizerOptions adam_opts;
    AdamW adam(params, adam_opts);
    auto outer_comm = splitAll(comm);
    auto outer = makeOuterOptimizer(params, *outer_comm, diloco(2, 0.7, 0.9), 0);
    const at::Generator gen = at::detail::createCPUGenerator(300 + rank);
    for (int64_t step = 1; step <= 4; ++step) {
      for (const auto& [name, p] : params) p.mutable_grad() = at::randn(p.sizes(), gen);
      adam.step(1e-2);
      NamedTensors before;
      for (const auto& [name, t] : adam.stateTensors()) before.emplace_back(name, t.clone());
      outer->afterInnerStep(step);
      const NamedTensors after = adam.stateTensors();
      ASSERT_EQ(before.size(), after.size());
      for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(at::equal(before[i].second, after[i].second));
      EXPECT_EQ(adam.stepCount(), step);
    }
  });
}

// Test 10: streaming fragments. With P = 2, H = 4, one of the two parameters
// ("w", 12 elements, and "b", 5) syncs every 2 steps, each every 4, and a sync
// sends only its fragment.
TEST(DiLoCoTest, StreamingSyncsOneFragmentEveryHOverPSteps) {
  loom::test::runRanks(2, [](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(17);
    auto outer_comm = splitAll(comm);
    OuterOptions opts = diloco(4, 1.0, 0.0);
    opts.fragments = 2;
    auto outer = makeOuterOptimizer(params, *outer_comm, opts, 0);
    const at::Generator gen = at::detail::createCPUGenerator(400 + rank);
    int64_t bytes = 0;
    for (int64_t step = 1; step <= 8; ++step) {
      for (const auto& [name, p] : params) p.detach().add_(at::randn(p.sizes(), gen));
      outer->afterInnerStep(step);
      const bool w_synced = step % 4 == 2;  // fragment 0 ends periods 1, 3, ...
      const bool b_synced = step % 4 == 0;
      EXPECT_EQ(identicalOnAllRanks(comm, params[0].second), w_synced) << "step " << step;
      EXPECT_EQ(identicalOnAllRanks(comm, params[1].second), b_synced) << "step " << step;
      const int64_t sent = outer_comm->bytesSent() - bytes;
      bytes = outer_comm->bytesSent();
      const int64_t fragment = w_synced ? 12 : b_synced ? 5 : 0;
      EXPECT_EQ(sent, fragment == 0 ? 0 : averageBytesSent(PseudoGradientCodec::kFp32, fragment, 2, rank))
          << "step " << step;
    }
  });
}

TEST(DiLoCoTest, StreamingRejectsSchedulesThatDoNotDivide) {
  auto self = dist::makeSelfCommunicator();
  OuterOptions opts = diloco(5, 0.7, 0.9);
  opts.fragments = 2;
  EXPECT_THROW(makeOuterOptimizer(smallParams(1), *self, opts, 0), InputError);
  opts = diloco(4, 0.7, 0.9);
  opts.fragments = 2;
  opts.fragment_delay = 2;  // must be < H / P = 2
  EXPECT_THROW(makeOuterOptimizer(smallParams(1), *self, opts, 0), InputError);
  opts.fragments = 3;  // only two parameter tensors to cut at
  opts.sync_every = 6;
  opts.fragment_delay = 0;
  EXPECT_THROW(makeOuterOptimizer(smallParams(1), *self, opts, 0), InputError);
}

// Test 10 continued: a delayed fragment (tau = 1) sends its pseudo-gradient one
// step before its sync. With alpha 0 the step made meanwhile is discarded;
// with alpha 1 the replica keeps it while the global weights advance.
TEST(DiLoCoTest, FragmentDelayDiscardsOrKeepsTheOverlappedSteps) {
  for (double alpha : {0.0, 1.0}) {
    auto self = dist::makeSelfCommunicator();
    const NamedTensors params = smallParams(19);
    const at::Tensor start = flatOf(params);
    OuterOptions opts = diloco(2, 1.0, 0.0);
    opts.fragment_delay = 1;
    opts.fragment_alpha = alpha;
    auto outer = makeOuterOptimizer(params, *self, opts, 0);
    setFlat(params, start + 1.0);
    outer->afterInnerStep(1);  // sends D = -1
    setFlat(params, start + 2.0);
    outer->afterInnerStep(2);  // global <- start + 1
    EXPECT_TRUE(at::allclose(outer->stateTensors()[0].second, start + 1.0, 0, 1e-6)) << "alpha " << alpha;
    EXPECT_TRUE(at::allclose(flatOf(params), start + (alpha == 0 ? 1.0 : 2.0), 0, 1e-6)) << "alpha " << alpha;
  }
}

// Test 11: delayed (async) DiLoCo on a quadratic, lr 1, momentum 0, against a
// reference simulation: round 1 applies nothing, round r >= 2 applies the
// average of round r - 1 (relative to the global weights round r - 1 started
// from), and every round starts from the global weights.
TEST(DiLoCoTest, DelayedAppliesEachAverageOneRoundLate) {
  constexpr int kReplicas = 2;
  constexpr int64_t kH = 3;
  constexpr int64_t kSteps = 12;
  const auto target = [](int r) { return at::full({17}, r == 0 ? 1.0 : -3.0, at::kDouble); };
  const auto local_step = [](const at::Tensor& theta, const at::Tensor& c) { return theta - 0.1 * (theta - c); };
  // Reference trajectory of each replica's weights after every step.
  std::vector<std::vector<at::Tensor>> expected(kReplicas);
  at::Tensor global = flatOf(smallParams(23)).to(at::kDouble);
  std::vector<at::Tensor> local(kReplicas, global);
  at::Tensor pending;  // the average in flight
  for (int64_t step = 1; step <= kSteps; ++step) {
    for (int r = 0; r < kReplicas; ++r) local[r] = local_step(local[r], target(r));
    if (step % kH == 0) {
      const at::Tensor delta = global - (local[0] + local[1]) / 2;  // started now, lands next round
      if (pending.defined()) global = global - pending;
      pending = delta;
      for (int r = 0; r < kReplicas; ++r) local[r] = global;
    }
    for (int r = 0; r < kReplicas; ++r) expected[r].push_back(local[r].clone());
  }
  const at::Tensor final_global = global - pending;  // finish() applies the last average

  loom::test::runRanks(kReplicas, [&](int rank, dist::Communicator& comm) {
    const NamedTensors params = smallParams(23);
    auto outer_comm = splitAll(comm);
    OuterOptions opts = diloco(kH, 1.0, 0.0);
    opts.delayed = true;
    auto outer = makeOuterOptimizer(params, *outer_comm, opts, 0);
    for (int64_t step = 1; step <= kSteps; ++step) {
      setFlat(params, local_step(flatOf(params).to(at::kDouble), target(rank)).to(at::kFloat));
      outer->afterInnerStep(step);
      EXPECT_TRUE(at::allclose(flatOf(params).to(at::kDouble), expected[rank][step - 1], 1e-5, 1e-5))
          << "step " << step;
    }
    outer->finish();
    EXPECT_TRUE(at::allclose(flatOf(params).to(at::kDouble), final_global, 1e-5, 1e-5));
  });
}

// Resuming from stateTensors() (with an average in flight) continues exactly.
TEST(DiLoCoTest, StateRoundTripContinuesExactly) {
  loom::test::runRanks(2, [](int rank, dist::Communicator& comm) {
    OuterOptions opts = diloco(2, 0.7, 0.9);
    opts.delayed = true;
    const auto run = [&](dist::Communicator& outer_comm, int64_t from, int64_t to, const NamedTensors& params,
                         OuterOptimizer& outer) {
      for (int64_t step = from; step <= to; ++step) {
        const at::Generator gen = at::detail::createCPUGenerator(1000 * rank + step);
        setFlat(params, flatOf(params) + at::randn({17}, gen) * 0.1);
        outer.afterInnerStep(step);
      }
      (void)outer_comm;
    };
    auto comm_a = splitAll(comm);
    const NamedTensors straight = smallParams(29);
    auto uninterrupted = makeOuterOptimizer(straight, *comm_a, opts, 0);
    run(*comm_a, 1, 8, straight, *uninterrupted);

    auto comm_b = splitAll(comm);
    const NamedTensors first = smallParams(29);
    auto before = makeOuterOptimizer(first, *comm_b, opts, 0);
    run(*comm_b, 1, 5, first, *before);
    NamedTensors saved;
    for (const auto& [name, t] : before->stateTensors()) saved.emplace_back(name, t.clone());
    auto comm_c = splitAll(comm);
    auto after = makeOuterOptimizer(first, *comm_c, opts, 0);
    after->loadState(saved);
    run(*comm_c, 6, 8, first, *after);
    EXPECT_TRUE(at::equal(flatOf(first), flatOf(straight)));
  });
}

}  // namespace
}  // namespace loom::optim::outer
