// Tensor parallelism on GPUs (issue 7): the model's tensor-parallel forward and
// backward on CUDA over loom's NcclCommunicator, one rank per GPU (one rank, and
// two where there are two GPUs), every job's kernels and collectives on the
// group's side stream (parallel/side_stream.h), gives the whole model's logits
// and gradients from a plain forward on one GPU: relative L2 distance <= 1e-5
// with float32 matmuls (TF32 off). Whole micro-batches, halves of the sequences
// and halves of one sequence's tokens, both sublayer ends. The micro-batch is
// large enough (2048 tokens of width 256) that a job reading its inputs before
// the compute stream wrote them, or a stream using a result before the side
// stream wrote it, shows up as wrong numbers. Built with a CUDA libtorch and
// NCCL; skips without a GPU.
#include "model/init.h"
#include "model/llama.h"
#include "model/tensor_parallel_shards.h"
#include "parallel/tensor_parallel.h"
#include "runtime/dist/nccl_communicator.h"

#include "tests/runtime/dist/nccl_test_util.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>

namespace loom::model {
namespace {

constexpr double kTolerance = 1e-5;

ModelOptions options() {
  ModelOptions o;
  o.vocab_size = 512;
  o.dim = 256;
  o.layers = 2;
  o.heads = 8;
  o.kv_heads = 2;
  o.ffn_dim = 512;
  o.max_seq_len = 2048;
  return o;
}

NamedTensors wholeParameters() {
  Llama model(options());
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  initializeParameters(*model, gen);
  NamedTensors out;
  for (const auto& [name, p] : model->namedParameters()) out.emplace_back(name, p.detach().clone());
  return out;
}

Llama modelFrom(const NamedTensors& params, int tp, const at::Device& device) {
  Llama model(options(), tp);
  const NamedTensors mine = model->namedParameters();
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < mine.size(); ++i) mine[i].second.copy_(params[i].second);
  model->to(device);
  return model;
}

double relativeDistance(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.cpu().to(at::kDouble), y = b.cpu().to(at::kDouble);
  return (x - y).norm().item<double>() / y.norm().item<double>();
}

NamedTensors gradientsOf(const Llama& model) {
  NamedTensors out;
  for (const auto& [name, p] : model->namedParameters()) out.emplace_back(name, p.grad());
  return out;
}

struct Reference {
  at::Tensor logits;
  NamedTensors grads;
};

Reference plainRun(const NamedTensors& params, const at::Tensor& inputs, const at::Tensor& targets) {
  const at::Device device(at::kCUDA, 0);
  Llama model = modelFrom(params, 1, device);
  const at::Tensor logits = model->forward(inputs.to(device));
  crossEntropySum(logits, targets.to(device)).backward();
  NamedTensors grads;
  for (const auto& [name, g] : gradientsOf(model)) grads.emplace_back(name, g.cpu());
  return {logits.cpu(), grads};
}

// (batch, sequence length, sequence_parallel): 2 x 1024 splits by sequences, 1 x 2048 by tokens.
class TensorParallelCudaTest : public testing::TestWithParam<std::tuple<int64_t, int64_t, bool>> {};

TEST_P(TensorParallelCudaTest, SplitRunsOnTheSideStreamAndEqualThePlainModel) {
  LOOM_REQUIRE_CUDA_DEVICES(1);
  // Plain locals: C++17 lets no lambda capture a structured binding.
  const int64_t batch = std::get<0>(GetParam());
  const int64_t length = std::get<1>(GetParam());
  const bool sp = std::get<2>(GetParam());
  const bool tf32 = at::globalContext().allowTF32CuBLAS();
  at::globalContext().setAllowTF32CuBLAS(false);
  const at::Tensor tokens =
      at::randint(options().vocab_size, {batch, length + 1}, at::detail::createCPUGenerator(5), at::kLong);
  const at::Tensor inputs = tokens.narrow(1, 0, length), targets = tokens.narrow(1, 1, length);
  const NamedTensors params = wholeParameters();
  const Reference want = plainRun(params, inputs, targets);

  const int ranks = std::min(dist::test::cudaDevices().count, 2);
  for (const int64_t split_min : {int64_t{0}, int64_t{512}}) {
    const std::string label =
        std::to_string(ranks) + " GPU(s), " + (split_min > 0 ? "split" : "unsplit") + (sp ? ", sp" : ", all-reduce");
    dist::test::runRanks(ranks, [&](int rank, c10::intrusive_ptr<c10d::Store> store) {
      auto comm = dist::makeNcclCommunicator(store, rank, ranks, rank);
      const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(rank));
      Llama model = modelFrom(shardTensors(params, ranks, rank), ranks, device);
      parallel::TensorParallel group(*comm, {sp, split_min});
      EXPECT_EQ(group.split(batch, length).parts, split_min > 0 ? 2 : 1);
      const at::Tensor logits = model->forward(inputs.to(device), group);
      EXPECT_LE(relativeDistance(logits, want.logits), kTolerance) << label << ", rank " << rank;
      crossEntropySum(logits, targets.to(device)).backward();
      const NamedTensors got = gatherTensors(gradientsOf(model), *comm);
      ASSERT_EQ(got.size(), want.grads.size());
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_LE(relativeDistance(got[i].second, want.grads[i].second), kTolerance)
            << label << ", rank " << rank << ", " << got[i].first;
      }
    });
  }
  at::globalContext().setAllowTF32CuBLAS(tf32);
}

INSTANTIATE_TEST_SUITE_P(Layouts, TensorParallelCudaTest,
                         testing::Values(std::make_tuple(int64_t{2}, int64_t{1024}, true),
                                         std::make_tuple(int64_t{2}, int64_t{1024}, false),
                                         std::make_tuple(int64_t{1}, int64_t{2048}, true)),
                         [](const testing::TestParamInfo<std::tuple<int64_t, int64_t, bool>>& info) {
                           return (std::get<0>(info.param) == 1 ? std::string("token_halves")
                                                                : std::string("sequence_halves")) +
                                  (std::get<2>(info.param) ? "_sequence_parallel" : "_all_reduce");
                         });

}  // namespace
}  // namespace loom::model
