// The model with tensor parallelism (issue 7; LlamaImpl::forward with a
// TensorParallel group): tp in {2, 4} ranks (threads with real Gloo
// communicators), each holding its shard of a model built whole and then
// split, give the whole model's logits and, once the shards' gradients are
// gathered, its parameter gradients, to 1e-5 relative; five AdamW steps give
// its parameters to 1e-5 relative. Both sublayer ends (sequence parallel and
// all-reduce), with and without token splitting, and tensor parallelism inside
// context parallelism.
#include "model/init.h"
#include "model/llama.h"
#include "model/tensor_parallel_shards.h"
#include "optim/adamw.h"
#include "parallel/ring_attention.h"
#include "runtime/core/error.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

namespace loom::model {
namespace {

constexpr double kTolerance = 1e-5;

/// Grouped-query attention (4 query, 2 kv heads) for tp 2; 4 kv heads for tp 4.
ModelOptions optionsFor(int tp) {
  ModelOptions o;
  o.vocab_size = 64;
  o.dim = 32;
  o.layers = 2;
  o.heads = 4;
  o.kv_heads = tp == 4 ? 4 : 2;
  o.ffn_dim = 48;
  o.max_seq_len = 64;
  return o;
}

Llama wholeModel(int tp) {
  Llama model(optionsFor(tp));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  initializeParameters(*model, gen);
  return model;
}

Llama shardModel(int tp, int rank) {
  Llama model(optionsFor(tp), tp);
  const NamedTensors shards = shardTensors(wholeModel(tp)->namedParameters(), tp, rank);
  const NamedTensors params = model->namedParameters();
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].first, shards[i].first);
    params[i].second.copy_(shards[i].second);
  }
  return model;
}

double relativeDistance(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>() / b.to(at::kDouble).norm().item<double>();
}

NamedTensors gradientsOf(const Llama& model) {
  NamedTensors out;
  for (const auto& [name, p] : model->namedParameters()) out.emplace_back(name, p.grad().clone());
  return out;
}

at::Tensor batchTokens(int64_t batch, int64_t length) {
  const at::Generator gen = at::detail::createCPUGenerator(5);
  return at::randint(64, {batch, length + 1}, gen, at::TensorOptions().dtype(at::kLong));
}

void expectNamedClose(const NamedTensors& got, const NamedTensors& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].second.sizes(), want[i].second.sizes()) << what << " " << want[i].first;
    EXPECT_LE(relativeDistance(got[i].second, want[i].second), kTolerance) << what << " " << want[i].first;
  }
}

// (tp, sequence_parallel, split_min_tokens)
class TensorParallelModelTest : public testing::TestWithParam<std::tuple<int, bool, int64_t>> {};

TEST_P(TensorParallelModelTest, LogitsAndGradientsEqualTheWholeModel) {
  const auto [tp, sp, split_min] = GetParam();
  const at::Tensor tokens = batchTokens(4, 16);
  const at::Tensor inputs = tokens.narrow(1, 0, 16), targets = tokens.narrow(1, 1, 16);
  Llama whole = wholeModel(tp);
  const at::Tensor ref_logits = whole->forward(inputs);
  crossEntropySum(ref_logits, targets).backward();
  const NamedTensors ref_grads = gradientsOf(whole);
  loom::test::runRanks(tp, [&](int rank, dist::Communicator& comm) {
    Llama model = shardModel(tp, rank);
    parallel::TensorParallel group(comm, {sp, split_min});
    EXPECT_EQ(group.split(4, 16).parts, split_min > 0 ? 2 : 1);
    const at::Tensor logits = model->forward(inputs, group);
    EXPECT_LE(relativeDistance(logits, ref_logits), kTolerance) << "rank " << rank;
    crossEntropySum(logits, targets).backward();
    expectNamedClose(gatherTensors(gradientsOf(model), comm), ref_grads, "rank " + std::to_string(rank));
  });
}

TEST_P(TensorParallelModelTest, FiveAdamWStepsEqualTheWholeModel) {
  const auto [tp, sp, split_min] = GetParam();
  const at::Tensor tokens = batchTokens(4, 16);
  const at::Tensor inputs = tokens.narrow(1, 0, 16), targets = tokens.narrow(1, 1, 16);
  const OptimizerOptions opts;
  constexpr int kSteps = 5;
  Llama whole = wholeModel(tp);
  optim::AdamW whole_adam(whole->namedParameters(), opts);
  for (int step = 0; step < kSteps; ++step) {
    whole->zero_grad();
    crossEntropySum(whole->forward(inputs), targets).backward();
    whole_adam.step(1e-2);
  }
  loom::test::runRanks(tp, [&](int rank, dist::Communicator& comm) {
    Llama model = shardModel(tp, rank);
    parallel::TensorParallel group(comm, {sp, split_min});
    optim::AdamW adam(model->namedParameters(), opts);
    for (int step = 0; step < kSteps; ++step) {
      model->zero_grad();
      crossEntropySum(model->forward(inputs, group), targets).backward();
      adam.step(1e-2);
    }
    expectNamedClose(gatherTensors(model->namedParameters(), comm), whole->namedParameters(),
                     "after 5 steps, rank " + std::to_string(rank));
  });
}

INSTANTIATE_TEST_SUITE_P(Shapes, TensorParallelModelTest,
                         testing::Values(std::make_tuple(2, true, int64_t{0}), std::make_tuple(2, true, int64_t{1}),
                                         std::make_tuple(2, false, int64_t{0}), std::make_tuple(2, false, int64_t{1}),
                                         std::make_tuple(4, true, int64_t{1}), std::make_tuple(4, false, int64_t{0})),
                         [](const testing::TestParamInfo<std::tuple<int, bool, int64_t>>& info) {
                           return "tp" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_sequence_parallel" : "_all_reduce") +
                                  (std::get<2>(info.param) > 0 ? "_split" : "_unsplit");
                         });

TEST(TensorParallelModelTest, SplitOutputEqualsUnsplit) {
  const at::Tensor inputs = batchTokens(6, 16).narrow(1, 0, 16);
  loom::test::runRanks(2, [&](int rank, dist::Communicator& comm) {
    Llama model = shardModel(2, rank);
    parallel::TensorParallel unsplit(comm, {true, 0});
    const at::Tensor whole = model->forward(inputs, unsplit);
    parallel::TensorParallel split(comm, {true, 96});
    ASSERT_EQ(split.split(6, 16).parts, 2);
    EXPECT_LE(relativeDistance(model->forward(inputs, split), whole), 1e-6);
  });
}

// A group of one rank (the GPU test's single-GPU case) is the plain model, split or not.
TEST(TensorParallelModelTest, OneRankGroupEqualsThePlainModel) {
  const at::Tensor tokens = batchTokens(2, 16);
  const at::Tensor inputs = tokens.narrow(1, 0, 16), targets = tokens.narrow(1, 1, 16);
  Llama plain = wholeModel(2);
  const at::Tensor ref_logits = plain->forward(inputs);
  crossEntropySum(ref_logits, targets).backward();
  const auto self = dist::makeSelfCommunicator();
  for (const bool sp : {true, false}) {
    for (const int64_t split_min : {int64_t{0}, int64_t{1}}) {
      const std::string label = std::string(sp ? "sp" : "all-reduce") + (split_min > 0 ? " split" : " unsplit");
      Llama model = wholeModel(2);
      parallel::TensorParallel group(*self, {sp, split_min});
      const at::Tensor logits = model->forward(inputs, group);
      EXPECT_LE(relativeDistance(logits, ref_logits), kTolerance) << label;
      crossEntropySum(logits, targets).backward();
      expectNamedClose(gradientsOf(model), gradientsOf(plain), label);
    }
  }
}

TEST(TensorParallelModelTest, SplitsOnlyMicroBatchesWithEnoughTokens) {
  const auto self = dist::makeSelfCommunicator();
  parallel::TensorParallel tp(*self, {true, 1024});
  EXPECT_EQ(tp.split(2, 511).parts, 1);
  EXPECT_EQ(tp.split(2, 512).parts, 2);
  EXPECT_FALSE(tp.split(3, 4096).by_tokens);
  EXPECT_TRUE(tp.split(1, 4096).by_tokens);  // one sequence: halves of its tokens
  EXPECT_EQ(tp.split(1, 1000).parts, 1);
  parallel::TensorParallel one_token(*self, {true, 1});
  EXPECT_EQ(one_token.split(1, 1).parts, 1);  // never an empty half
  parallel::TensorParallel never(*self, {true, 0});
  EXPECT_EQ(never.split(64, 4096).parts, 1);
}

// One sequence split into token halves (the second attending to the first):
// logits and gathered gradients equal the whole model's, for a plain causal
// sequence and for packed documents with padding (a one-rank context group).
TEST(TensorParallelModelTest, TokenHalvesOfOneSequenceEqualTheWholeModel) {
  constexpr int64_t kLength = 31;  // odd: unequal halves
  const at::Tensor tokens = batchTokens(1, kLength);
  const at::Tensor inputs = tokens.narrow(1, 0, kLength), targets = tokens.narrow(1, 1, kLength);
  at::Tensor documents = at::zeros({kLength}, at::kLong);
  documents.narrow(0, 9, 12).fill_(1);
  documents.narrow(0, 21, 8).fill_(2);
  documents.narrow(0, 29, 2).fill_(-1);  // padding
  at::Tensor positions = at::arange(kLength, at::kLong);
  positions.narrow(0, 9, 12).sub_(9);
  positions.narrow(0, 21, 8).sub_(21);
  const auto self = dist::makeSelfCommunicator();
  const parallel::TokenLayout packed{positions, documents};
  for (const bool with_documents : {false, true}) {
    Llama whole = wholeModel(2);
    const at::Tensor ref_logits = with_documents ? whole->forward(inputs, packed, *self) : whole->forward(inputs);
    crossEntropySum(ref_logits.narrow(1, 0, 29), targets.narrow(1, 0, 29)).backward();
    const NamedTensors ref_grads = gradientsOf(whole);
    for (const bool sp : {true, false}) {
      const std::string label = std::string(with_documents ? "documents" : "causal") + (sp ? " sp" : " all-reduce");
      loom::test::runRanks(2, [&](int rank, dist::Communicator& comm) {
        Llama model = shardModel(2, rank);
        parallel::TensorParallel group(comm, {sp, 16});
        ASSERT_TRUE(group.split(1, kLength).by_tokens);
        const auto own = dist::makeSelfCommunicator();
        const at::Tensor logits =
            with_documents ? model->forward(inputs, packed, *own, group) : model->forward(inputs, group);
        EXPECT_LE(relativeDistance(logits.narrow(1, 0, 29), ref_logits.narrow(1, 0, 29)), kTolerance) << label;
        crossEntropySum(logits.narrow(1, 0, 29), targets.narrow(1, 0, 29)).backward();
        expectNamedClose(gatherTensors(gradientsOf(model), comm), ref_grads, label);
      });
    }
  }
}

TEST(TensorParallelModelTest, ShardsAndGatherRoundTripAndNameTheSplitDimension) {
  EXPECT_EQ(tensorParallelDim("blocks.3.attn.wq.weight"), 0);
  EXPECT_EQ(tensorParallelDim("exp_avg.blocks.0.mlp.w3.weight"), 0);
  EXPECT_EQ(tensorParallelDim("blocks.1.attn.wo.weight"), 1);
  EXPECT_EQ(tensorParallelDim("exp_avg_sq.blocks.1.mlp.w2.weight"), 1);
  EXPECT_EQ(tensorParallelDim("blocks.1.attn_norm.weight"), -1);
  EXPECT_EQ(tensorParallelDim("tok_emb.weight"), -1);
  const NamedTensors whole = wholeModel(2)->namedParameters();
  loom::test::runRanks(2, [&](int rank, dist::Communicator& comm) {
    const NamedTensors back = gatherTensors(shardTensors(whole, 2, rank), comm);
    for (size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(back[i].second.equal(whole[i].second)) << whole[i].first;
  });
  EXPECT_THROW(shardTensors({{"blocks.0.attn.wq.weight", at::zeros({3, 4})}}, 2, 0), loom::InputError);
}

TEST(TensorParallelModelTest, AShardRefusesTheUnshardedForward) {
  Llama model(optionsFor(2), 2);
  EXPECT_THROW(model->forward(batchTokens(1, 4).narrow(1, 0, 4)), loom::InputError);
}

// Four ranks: tensor-parallel pairs {0, 1}, {2, 3}; context-parallel pairs
// {0, 2}, {1, 3} sharing one sequence, with token splitting on. Zigzag shares
// split into token halves under ring attention (twice the sublayer-end jobs);
// contiguous shares, whose first halves are no prefix, run whole.
TEST(TensorParallelModelTest, InsideContextParallelismEqualsTheWholeModel) {
  constexpr int64_t kLength = 32;
  const at::Tensor tokens = batchTokens(1, kLength);
  const at::Tensor inputs = tokens.narrow(1, 0, kLength), targets = tokens.narrow(1, 1, kLength);
  Llama whole = wholeModel(2);
  const at::Tensor ref_loss = crossEntropySum(whole->forward(inputs), targets);
  ref_loss.backward();
  const NamedTensors ref_grads = gradientsOf(whole);
  for (const bool zigzag : {true, false}) {
    const std::string label = zigzag ? "zigzag" : "contiguous";
    loom::test::runRanks(4, [&](int rank, dist::Communicator& comm) {
      const int tp_rank = rank % 2, cp_rank = rank / 2;
      const auto tp_comm = comm.split({2 * cp_rank, 2 * cp_rank + 1});
      const auto cp_comm = comm.split({tp_rank, tp_rank + 2});
      Llama model = shardModel(2, tp_rank);
      const at::Tensor index = zigzag ? at::tensor(parallel::zigzagIndices(kLength, 2, cp_rank), at::kLong)
                                      : at::arange(cp_rank * kLength / 2, (cp_rank + 1) * kLength / 2, at::kLong);
      const parallel::TokenLayout layout{index, at::zeros({index.size(0)}, at::kLong)};
      int64_t jobs[2] = {0, 0};  // unsplit, split
      for (const int64_t split_min : {int64_t{0}, int64_t{1}}) {
        parallel::TensorParallel tp(*tp_comm, {true, split_min});
        model->zero_grad();
        const at::Tensor loss = crossEntropySum(model->forward(inputs.index_select(1, index), layout, *cp_comm, tp),
                                                targets.index_select(1, index));
        loss.backward();
        jobs[split_min] = tp.stream().stats().jobs;
        at::Tensor total = loss.detach().to(at::kDouble).reshape({1});
        cp_comm->allReduce(total, dist::ReduceOp::kSum)->wait();
        EXPECT_NEAR(total.item<double>(), ref_loss.item<double>(), kTolerance * ref_loss.item<double>()) << label;
        NamedTensors grads = gradientsOf(model);
        for (auto& [name, g] : grads) cp_comm->allReduce(g, dist::ReduceOp::kSum)->wait();
        expectNamedClose(gatherTensors(grads, *tp_comm), ref_grads, label + ", rank " + std::to_string(rank));
      }
      EXPECT_EQ(jobs[1], zigzag ? 2 * jobs[0] : jobs[0]) << label;
    });
  }
}

}  // namespace
}  // namespace loom::model
