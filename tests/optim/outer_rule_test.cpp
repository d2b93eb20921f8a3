// Outer update rules against golden values and torch::optim::SGD, and NoLoCo's
// pairing (../shared/reference/optimizers.md §7, tests 4, 16, 20, 21).
#include "optim/outer/outer_rule.h"
#include "optim/outer/pairing.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>

#include <algorithm>
#include <set>

namespace loom::optim::outer {
namespace {

OuterRule rule(OuterRule::Kind kind, double lr, double momentum) {
  OuterRule r;
  r.kind = kind;
  r.lr = lr;
  r.momentum = momentum;
  return r;
}

// Test 4: averaged pseudo-gradients 1, 1 with lr 0.7, momentum 0.9: the
// weights move by -1.33, then by -1.897.
TEST(OuterRuleTest, NesterovGoldenValues) {
  const OuterRule nesterov = rule(OuterRule::Kind::kNesterov, 0.7, 0.9);
  at::Tensor x = at::zeros({1}, at::kDouble);
  at::Tensor m = at::zeros({1}, at::kDouble);
  const at::Tensor g = at::ones({1}, at::kDouble);
  nesterov.apply(x, m, g);
  EXPECT_NEAR(x.item<double>(), -1.33, 1e-12);
  nesterov.apply(x, m, g);
  EXPECT_NEAR(x.item<double>(), -1.33 - 1.897, 1e-12);
  EXPECT_NEAR(m.item<double>(), 1.9, 1e-12);
}

// Test 4: the Nesterov and heavy-ball rules equal torch::optim::SGD bit for bit.
TEST(OuterRuleTest, MatchesTorchSgdBitForBit) {
  for (bool nesterov : {true, false}) {
    const at::Generator gen = at::detail::createCPUGenerator(3);
    at::Tensor theirs = at::randn({1000}, gen);
    at::Tensor ours = theirs.clone();
    at::Tensor momentum = at::zeros_like(ours);
    torch::optim::SGD sgd({theirs}, torch::optim::SGDOptions(0.7).momentum(0.9).nesterov(nesterov));
    const OuterRule r = rule(nesterov ? OuterRule::Kind::kNesterov : OuterRule::Kind::kHeavyBall, 0.7, 0.9);
    for (int step = 0; step < 5; ++step) {
      const at::Tensor g = at::randn({1000}, gen) + 0.5;
      theirs.mutable_grad() = g.clone();
      sgd.step();
      r.apply(ours, momentum, g);
      ASSERT_TRUE(at::equal(ours, theirs)) << "nesterov " << nesterov << " step " << step;
    }
  }
}

// Test 20: a constant staleness penalty lambda scales the outer gradient by exactly 1 / lambda.
TEST(OuterRuleTest, Co2PenaltyDividesTheGradient) {
  OuterRule co2 = rule(OuterRule::Kind::kCo2, 1.0, 0.0);
  co2.staleness_penalty = 4.0;
  const at::Tensor g = at::randn({100});
  at::Tensor x = at::zeros({100});
  at::Tensor m = at::zeros({100});
  co2.apply(x, m, g);
  EXPECT_TRUE(at::equal(m, g.div(4.0)));
  EXPECT_TRUE(at::equal(x, -g.div(4.0)));
}

// Test 21: the momentum clip is really applied (the public CO2 code's clamp is
// out of place and discarded): |m| <= phi after every step, and large
// gradients move the weights by exactly lr * phi.
TEST(OuterRuleTest, Co2ClipIsApplied) {
  OuterRule co2 = rule(OuterRule::Kind::kCo2, 0.5, 0.9);
  co2.clip = 0.25;
  at::Tensor x = at::zeros({4});
  at::Tensor m = at::zeros({4});
  const at::Tensor g = at::tensor({10.0f, -10.0f, 0.1f, -0.1f});
  co2.apply(x, m, g);
  EXPECT_LE(m.abs().max().item<float>(), 0.25f);
  EXPECT_TRUE(at::allclose(x, at::tensor({-0.125f, 0.125f, -0.05f, 0.05f})));
  for (int i = 0; i < 5; ++i) {
    co2.apply(x, m, g);
    EXPECT_LE(m.abs().max().item<float>(), 0.25f);
  }
}

// Test 16: every replica computes the same groups from (seed, step); groups
// partition the replicas with size n when n divides k (outer_elastic_test.cpp
// covers the k / n groups of other counts); steps differ.
TEST(PairingTest, GroupsPartitionTheReplicasTheSameWayEverywhere) {
  for (int k : {2, 4, 6, 8}) {
    for (int n : {2, k}) {
      const auto groups = replicaGroups(42, 5, k, n);
      EXPECT_EQ(groups, replicaGroups(42, 5, k, n));
      std::set<int> seen;
      for (const auto& g : groups) {
        EXPECT_EQ(static_cast<int>(g.size()), n);
        EXPECT_TRUE(std::is_sorted(g.begin(), g.end()));
        seen.insert(g.begin(), g.end());
      }
      EXPECT_EQ(static_cast<int>(seen.size()), k);
      for (int r = 0; r < k; ++r) {
        const auto mine = groupOf(42, 5, k, n, r);
        EXPECT_NE(std::find(mine.begin(), mine.end(), r), mine.end());
      }
    }
  }
  const std::vector<std::vector<int>> one_group{{0, 1, 2, 3, 4, 5}};
  EXPECT_EQ(replicaGroups(42, 5, 6, 4), one_group) << "4 does not divide 6: 6 / 4 = 1 group of all";
  EXPECT_THROW(replicaGroups(42, 5, 6, 0), InputError);
  std::set<std::vector<std::vector<int>>> distinct;
  for (int64_t step = 0; step < 20; ++step) distinct.insert(replicaGroups(42, step, 8, 2));
  EXPECT_GT(distinct.size(), 10u) << "pairings should change from step to step";
}

// The permutation is uniform: over many steps each replica lands in each slot about equally often.
TEST(PairingTest, PermutationIsUniform) {
  constexpr int kReplicas = 4;
  constexpr int kSteps = 40000;
  std::vector<std::vector<int>> counts(kReplicas, std::vector<int>(kReplicas, 0));
  for (int64_t step = 0; step < kSteps; ++step) {
    const auto perm = replicaPermutation(7, step, kReplicas);
    for (int slot = 0; slot < kReplicas; ++slot) ++counts[perm[slot]][slot];
  }
  for (const auto& row : counts) {
    for (int c : row) EXPECT_NEAR(c, kSteps / kReplicas, 400);  // ~4.6 standard deviations
  }
}

}  // namespace
}  // namespace loom::optim::outer
