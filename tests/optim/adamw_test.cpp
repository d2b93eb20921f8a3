#include "optim/adamw.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <cmath>

namespace loom::optim {
namespace {

// The reference is libtorch's own torch::optim::AdamW (same update as PyTorch's
// Python AdamW), with weight decay only on the matrix, as loom applies it.
TEST(AdamWTest, MatchesLibtorchAdamWOverSeveralSteps) {
  at::manual_seed(7);
  OptimizerOptions opts;
  opts.beta1 = 0.9;
  opts.beta2 = 0.95;
  opts.eps = 1e-8;
  opts.weight_decay = 0.1;
  at::Tensor matrix = at::randn({16, 8});
  at::Tensor gain = at::randn({8});
  at::Tensor ref_matrix = matrix.clone().requires_grad_(true);
  at::Tensor ref_gain = gain.clone().requires_grad_(true);

  AdamW ours({{"w", matrix}, {"g", gain}}, opts);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<at::Tensor>{ref_matrix},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-3).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(std::vector<at::Tensor>{ref_gain},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-3).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(1e-3));

  const double lrs[] = {1e-3, 5e-3, 2e-3, 1e-2, 3e-4};
  for (double lr : lrs) {
    const at::Tensor gm = at::randn({16, 8});
    const at::Tensor gg = at::randn({8});
    matrix.mutable_grad() = gm.clone();
    gain.mutable_grad() = gg.clone();
    ref_matrix.mutable_grad() = gm.clone();
    ref_gain.mutable_grad() = gg.clone();
    for (auto& group : reference.param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    ours.step(lr);
    reference.step();
    // Tolerance: float32 rounding of a differently associated but equal formula.
    EXPECT_TRUE(at::allclose(matrix, ref_matrix.detach(), 1e-6, 1e-7)) << "lr " << lr;
    EXPECT_TRUE(at::allclose(gain, ref_gain.detach(), 1e-6, 1e-7)) << "lr " << lr;
  }
  EXPECT_EQ(ours.stepCount(), 5);
}

// Closed form of the first step: m = (1-b1) g, v = (1-b2) g^2, so the update is
// lr * g / (|g| + eps) after decoupled decay p * (1 - lr * wd).
TEST(AdamWTest, FirstStepHasClosedForm) {
  OptimizerOptions opts;
  opts.weight_decay = 0.1;
  at::Tensor w = at::full({2, 2}, 0.5f);
  w.mutable_grad() = at::tensor({0.3f, -2.0f, 1e-3f, 4.0f}).view({2, 2});
  AdamW adam({{"w", w}}, opts);
  const double lr = 0.01;
  adam.step(lr);
  const float grads[] = {0.3f, -2.0f, 1e-3f, 4.0f};
  for (int i = 0; i < 4; ++i) {
    const double g = grads[i];
    const double expected = 0.5 * (1 - lr * 0.1) - lr * g / (std::abs(g) + opts.eps);
    EXPECT_NEAR(w.view({-1})[i].item<float>(), expected, 1e-6) << i;
  }
}

TEST(AdamWTest, StateRoundTripContinuesIdentically) {
  OptimizerOptions opts;
  at::manual_seed(3);
  at::Tensor a = at::randn({4, 4});
  at::Tensor b = a.clone();
  AdamW first({{"p", a}}, opts);
  for (int i = 0; i < 3; ++i) {
    a.mutable_grad() = at::randn({4, 4});
    first.step(1e-2);
  }
  b.copy_(a);
  AdamW second({{"p", b}}, opts);
  NamedTensors saved;
  for (auto& [name, t] : first.stateTensors()) saved.emplace_back(name, t.clone());
  second.loadState(saved, first.stepCount());
  const at::Tensor g = at::randn({4, 4});
  a.mutable_grad() = g.clone();
  b.mutable_grad() = g.clone();
  first.step(1e-2);
  second.step(1e-2);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_EQ(first.stateBytes(), 2 * 16 * 4);
}

TEST(AdamWTest, LoadStateRejectsForeignState) {
  at::Tensor p = at::zeros({3});
  AdamW adam({{"p", p}}, OptimizerOptions{});
  EXPECT_THROW(adam.loadState({{"exp_avg.q", at::zeros({3})}, {"exp_avg_sq.q", at::zeros({3})}}, 1), c10::ValueError);
  EXPECT_THROW(adam.loadState({{"exp_avg.p", at::zeros({4})}, {"exp_avg_sq.p", at::zeros({4})}}, 1), c10::ValueError);
}

TEST(AdamWTest, ParameterWithoutGradientIsUntouched) {
  at::Tensor p = at::ones({2, 2});
  AdamW adam({{"p", p}}, OptimizerOptions{});
  adam.step(0.1);
  EXPECT_TRUE(at::equal(p, at::ones({2, 2})));
}

}  // namespace
}  // namespace loom::optim
