// HDP steps over real Gloo communicators, ranks as threads (train/hdp_step.h;
// parallel_elastic.md §6 tests 6, 7, 10): a step over a pool of 4 ranks, with
// long sequences in context-parallel groups of 2 and 4 and short ones packed,
// gives after one gradient sum over the pool divided by the global token count
// the gradient of single-process training on the same batch (per-token mean
// loss), to 1e-5 relative; permuting the batch (a different assignment) or
// lowering the capacity (other group sizes, more waves) does not change it;
// ranks that run different numbers of forwards or none at all still join the
// one reduction.
#include "parallel/group_cache.h"
#include "parallel/hdp_plan.h"
#include "parallel/static_plan.h"
#include "tests/model/tiny_model.h"
#include "tests/support/multi_rank.h"
#include "train/hdp_step.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace loom::train {
namespace {

constexpr int kPool = 4;

model::Llama makeModel() { return model::test::tinyModel(128, 5); }

std::vector<at::Tensor> makeSequences(const std::vector<int64_t>& lengths) {
  const at::Generator gen = at::detail::createCPUGenerator(9);
  std::vector<at::Tensor> out;
  for (int64_t length : lengths) out.push_back(at::randint(64, {length + 1}, gen, at::TensorOptions().dtype(at::kLong)));
  return out;
}

// Single process: mean token loss over every sequence, each alone; its gradients.
std::vector<at::Tensor> referenceGradients(const std::vector<at::Tensor>& sequences) {
  model::Llama m = makeModel();
  at::Tensor loss_sum = at::zeros({}, at::kFloat);
  int64_t tokens = 0;
  for (const at::Tensor& s : sequences) {
    const int64_t length = s.numel() - 1;
    loss_sum = loss_sum + model::crossEntropySum(m->forward(s.narrow(0, 0, length).unsqueeze(0)),
                                                 s.narrow(0, 1, length).unsqueeze(0));
    tokens += length;
  }
  (loss_sum / static_cast<double>(tokens)).backward();
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : m->parameters()) grads.push_back(p.grad().clone());
  return grads;
}

double relativeDistance(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>() / b.to(at::kDouble).norm().item<double>();
}

// Runs the HDP step of `order` (a permutation of the sequences) with capacity
// `capacity` and checks the reduced gradients against `reference`; returns the
// forwards each rank ran.
std::vector<int64_t> expectHdpEqualsReference(const std::vector<at::Tensor>& sequences,
                                              const std::vector<size_t>& order, int64_t capacity,
                                              const std::vector<at::Tensor>& reference, const std::string& label) {
  std::vector<at::Tensor> batch;
  std::vector<int64_t> lengths;
  for (size_t i : order) {
    batch.push_back(sequences[i]);
    lengths.push_back(sequences[i].numel() - 1);
  }
  const parallel::HdpPlan plan = parallel::planHdp(lengths, parallel::HdpOptions{kPool, capacity});
  std::vector<int64_t> forwards(kPool, 0);
  loom::test::runRanks(kPool, [&](int rank, dist::Communicator& comm) {
    parallel::GroupCache groups(comm);
    model::Llama m = makeModel();
    const HdpRankResult result = runHdpStep(*m, plan, batch, groups);
    forwards[static_cast<size_t>(rank)] = result.forwards;
    // The step's one reduction: gradient sums and the token count over the pool.
    at::Tensor tokens = at::full({1}, static_cast<double>(result.tokens), at::kDouble);
    comm.allReduce(tokens, dist::ReduceOp::kSum)->wait();
    EXPECT_EQ(tokens.item<double>(), static_cast<double>(plan.global_tokens)) << label;
    const std::vector<at::Tensor> params = m->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor g = params[i].grad().defined() ? params[i].grad().clone() : at::zeros_like(params[i]);
      comm.allReduce(g, dist::ReduceOp::kSum)->wait();
      g.div_(tokens.item<double>());
      EXPECT_LE(relativeDistance(g, reference[i]), 1e-5) << label << " rank " << rank << " parameter " << i;
    }
  });
  return forwards;
}

TEST(HdpStepTest, GradientsEqualSingleProcessForAnyAssignment) {
  // Capacity 16: the 60-token sequence needs a group of 4, the 30 one of 2, the rest pack.
  const std::vector<int64_t> lengths = {60, 30, 9, 7, 5, 5, 3, 2, 12, 1};
  const std::vector<at::Tensor> sequences = makeSequences(lengths);
  const std::vector<at::Tensor> reference = referenceGradients(sequences);
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  const std::vector<int64_t> forwards = expectHdpEqualsReference(sequences, order, 16, reference, "capacity 16");
  // Unequal work: the ranks do not all run the same number of forwards.
  EXPECT_NE(*std::min_element(forwards.begin(), forwards.end()), *std::max_element(forwards.begin(), forwards.end()));
  std::mt19937 rng(3);
  for (int trial = 0; trial < 3; ++trial) {
    std::shuffle(order.begin(), order.end(), rng);
    expectHdpEqualsReference(sequences, order, 16, reference, "permutation " + std::to_string(trial));
  }
  // Capacity 32: the long sequence now takes a group of 2, the 30 one a single rank.
  expectHdpEqualsReference(sequences, order, 32, reference, "capacity 32");
}

// The static dp x cp baseline computes the same gradients: cp 4 (one group of
// all ranks, rows of up to 64 tokens) and cp 2 (two groups of 2).
TEST(HdpStepTest, StaticMeshGradientsEqualSingleProcess) {
  const std::vector<int64_t> lengths = {60, 30, 9, 7, 5, 5, 3, 2, 12, 1};
  const std::vector<at::Tensor> sequences = makeSequences(lengths);
  const std::vector<at::Tensor> reference = referenceGradients(sequences);
  for (const int cp : {4, 2}) {
    const parallel::StaticPlan plan = parallel::planStatic(lengths, kPool, cp, 64 / cp);
    EXPECT_EQ(parallel::staticCp(60, 64 / cp), cp);
    loom::test::runRanks(kPool, [&](int rank, dist::Communicator& comm) {
      parallel::GroupCache groups(comm);
      model::Llama m = makeModel();
      const HdpRankResult result = runStaticStep(*m, plan, sequences, groups);
      at::Tensor tokens = at::full({1}, static_cast<double>(result.tokens), at::kDouble);
      comm.allReduce(tokens, dist::ReduceOp::kSum)->wait();
      EXPECT_EQ(tokens.item<double>(), static_cast<double>(plan.global_tokens));
      const std::vector<at::Tensor> params = m->parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        at::Tensor g = params[i].grad().defined() ? params[i].grad().clone() : at::zeros_like(params[i]);
        comm.allReduce(g, dist::ReduceOp::kSum)->wait();
        EXPECT_LE(relativeDistance(g.div_(tokens.item<double>()), reference[i]), 1e-5)
            << "cp " << cp << " rank " << rank << " parameter " << i;
      }
    });
  }
}

TEST(HdpStepTest, RanksWithoutTokensStillJoinTheReduction) {
  const std::vector<at::Tensor> sequences = makeSequences({10, 3});
  const std::vector<int64_t> forwards =
      expectHdpEqualsReference(sequences, {0, 1}, 16, referenceGradients(sequences), "two short sequences");
  EXPECT_EQ(std::count(forwards.begin(), forwards.end(), 0), 2);
}

}  // namespace
}  // namespace loom::train
