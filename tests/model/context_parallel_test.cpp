// The model with context parallelism (LlamaImpl::forward with a token layout
// and a group; issue 6): a sequence spread over cp in {2, 3} ranks (threads
// with real Gloo communicators) in zigzag shares, each rank summing the token
// losses of its own tokens, gives after summing over ranks the loss and
// parameter gradients of the single-process model on the whole sequence, to
// 1e-5 relative. Packed documents (causal within each) and padding included.
#include "model/llama.h"
#include "parallel/ring_attention.h"
#include "tests/model/tiny_model.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

namespace loom::model {
namespace {

Llama makeModel(uint64_t seed) { return test::tinyModel(64, seed); }

double relativeDistance(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>() / b.to(at::kDouble).norm().item<double>();
}

// Loss sum and gradients of the whole sequence in one process. `documents`
// [L]: per-document causal attention through a one-rank ring.
struct Reference {
  double loss = 0;
  std::vector<at::Tensor> grads;
};

Reference referenceOf(const at::Tensor& tokens, const at::Tensor& documents, int64_t length) {
  Llama model = makeModel(7);
  const auto self = dist::makeSelfCommunicator();
  const parallel::TokenLayout layout{at::arange(length, at::kLong), documents};
  const at::Tensor logits = model->forward(tokens.narrow(1, 0, length), layout, *self);
  const at::Tensor loss = crossEntropySum(logits, tokens.narrow(1, 1, length));
  loss.backward();
  Reference ref{loss.item<double>(), {}};
  for (const at::Tensor& p : model->parameters()) ref.grads.push_back(p.grad().clone());
  return ref;
}

void expectCpEqualsSingleProcess(int cp, int64_t length, const std::vector<int64_t>& document_lengths) {
  const at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor tokens = at::randint(64, {1, length + 1}, gen, at::TensorOptions().dtype(at::kLong));
  at::Tensor documents = at::zeros({length}, at::kLong);
  int64_t start = 0;
  for (size_t d = 0; d < document_lengths.size(); ++d) {
    documents.narrow(0, start, document_lengths[d]).fill_(static_cast<int64_t>(d));
    start += document_lengths[d];
  }
  // Without documents a plain forward is the reference too: check the two agree.
  const Reference ref = referenceOf(tokens, documents, length);
  if (document_lengths.empty()) {
    Llama plain = makeModel(7);
    EXPECT_NEAR(crossEntropySum(plain->forward(tokens.narrow(1, 0, length)), tokens.narrow(1, 1, length)).item<double>(),
                ref.loss, 1e-4 * std::abs(ref.loss));
  }
  loom::test::runRanks(cp, [&](int rank, dist::Communicator& comm) {
    Llama model = makeModel(7);
    const std::vector<int64_t> share = parallel::zigzagIndices(length, cp, rank);
    const at::Tensor index = at::tensor(share, at::kLong);
    const at::Tensor real = index.lt(length);
    const at::Tensor clamped = index.clamp_max(length - 1);
    parallel::TokenLayout layout{clamped.clone(), documents.index_select(0, clamped).masked_fill(real.logical_not(), -1)};
    const at::Tensor inputs = tokens.select(0, 0).index_select(0, clamped).masked_fill(real.logical_not(), 0).unsqueeze(0);
    const at::Tensor targets = tokens.select(0, 0).index_select(0, clamped + 1).unsqueeze(0);
    const at::Tensor logits = model->forward(inputs, layout, comm);
    // Only real tokens carry loss: padding rows are dropped.
    const at::Tensor rows = real.nonzero().squeeze(1);
    const at::Tensor loss = crossEntropySum(logits.index_select(1, rows), targets.index_select(1, rows));
    loss.backward();
    at::Tensor total = loss.detach().to(at::kDouble).reshape({1});
    comm.allReduce(total, dist::ReduceOp::kSum)->wait();
    EXPECT_NEAR(total.item<double>(), ref.loss, 1e-5 * std::abs(ref.loss)) << "cp " << cp << " rank " << rank;
    const std::vector<at::Tensor> params = model->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor g = params[i].grad().clone();
      comm.allReduce(g, dist::ReduceOp::kSum)->wait();
      EXPECT_LE(relativeDistance(g, ref.grads[i]), 1e-5) << "cp " << cp << " parameter " << i;
    }
  });
}

TEST(ContextParallelModelTest, OneSequenceOverTwoAndThreeRanksEqualsOneProcess) {
  expectCpEqualsSingleProcess(2, 32, {});
  expectCpEqualsSingleProcess(3, 37, {});  // padded to 42
}

TEST(ContextParallelModelTest, PackedDocumentsStayCausalWithinEachDocument) {
  expectCpEqualsSingleProcess(2, 30, {3, 12, 1, 14});
  expectCpEqualsSingleProcess(3, 29, {20, 2, 7});
}

}  // namespace
}  // namespace loom::model
