// The outer optimizers on a plain libtorch model and optimizer, outside loom's
// trainer: torch::nn::Linear trained by torch::optim::SGD on each of two
// in-process replicas, each on its own data, synced through makeOuterOptimizer.
#include "optim/outer/outer_optimizer.h"
#include "tests/optim/outer_test_util.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

namespace loom::optim::outer {
namespace {

struct Case {
  const char* name;
  OuterAlgorithm algorithm;
  bool replicas_agree_after_sync;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class PlainLibtorchTest : public ::testing::TestWithParam<Case> {};

// Replica r fits y = x w_r with w_r = w* + noise_r: alone, each drifts to its
// own w_r; synced, they approach the mean of the w_r (data parallelism's
// optimum). The loss against that mean falls tenfold, and the replicas hold
// identical weights after every sync.
TEST_P(PlainLibtorchTest, TwoReplicasTrainATorchModule) {
  const Case c = GetParam();
  loom::test::runRanks(2, [&c](int rank, dist::Communicator& comm) {
    torch::nn::Linear model(torch::nn::LinearOptions(8, 1).bias(false));
    {
      // The same initial weights on both replicas (rank threads must not share torch's global generator).
      torch::NoGradGuard no_grad;
      model->weight.copy_(at::randn({1, 8}, at::detail::createCPUGenerator(0)));
    }
    torch::optim::SGD inner(model->parameters(), torch::optim::SGDOptions(0.05));
    NamedTensors named;
    for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());

    auto outer_comm = test::splitAll(comm);
    OuterOptions opts;
    opts.algorithm = c.algorithm;
    opts.sync_every = 5;
    opts.codec = PseudoGradientCodec::kFp16;
    auto outer = makeOuterOptimizer(named, *outer_comm, opts, 3);

    const at::Tensor w_star = at::linspace(-1, 1, 8).view({8, 1});
    const auto target_of = [&](int r) {
      return w_star + 0.3 * at::randn({8, 1}, at::detail::createCPUGenerator(100 + r));
    };
    const at::Tensor w_mine = target_of(rank);
    const at::Tensor w_mean = (target_of(0) + target_of(1)) / 2;  // what data parallelism would converge to
    const at::Generator gen = at::detail::createCPUGenerator(10 + rank);
    const at::Tensor probe = at::randn({256, 8}, gen);
    const auto common_loss = [&] {
      torch::NoGradGuard no_grad;
      return torch::nn::functional::mse_loss(model->forward(probe), probe.matmul(w_mean)).item<double>();
    };
    const double before = common_loss();
    for (int64_t step = 1; step <= 100; ++step) {
      const at::Tensor x = at::randn({32, 8}, gen);
      inner.zero_grad();
      torch::nn::functional::mse_loss(model->forward(x), x.matmul(w_mine)).backward();
      inner.step();
      outer->afterInnerStep(step);
      if (step % 5 == 0) {
        EXPECT_EQ(test::identicalOnAllRanks(comm, model->weight.detach()), c.replicas_agree_after_sync)
            << "step " << step;
      }
    }
    outer->finish();
    EXPECT_LT(common_loss(), 0.1 * before);
    EXPECT_TRUE(model->weight.is_leaf() && model->weight.requires_grad());
  });
}

INSTANTIATE_TEST_SUITE_P(Algorithms, PlainLibtorchTest,
                         ::testing::Values(Case{"DiLoCo", OuterAlgorithm::kDiLoCo, true},
                                           // Two replicas are NoLoCo's only pair: its consensus keeps them equal.
                                           Case{"NoLoCo", OuterAlgorithm::kNoLoCo, true},
                                           // CO2 restarts each round from global weights that are equal everywhere.
                                           Case{"Co2", OuterAlgorithm::kCo2, true}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace loom::optim::outer
