// loom::kernels::causalSoftmax (kernels/torch/causal_softmax_ops.h) and
// torch.ops.loom.causal_softmax through the dispatcher: values and gradients against
// autograd through model/attention.cpp's composite in float64 (tolerances as in
// causal_softmax_cpu_test.cpp) for any leading dims and q_len < k_len, exact zeros in
// the masked part of probs and the gradient, and the error messages.
#include "kernels/torch/causal_softmax_ops.h"

#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/op_test_util.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <limits>
#include <string>
#include <vector>

namespace loom::kernels {
namespace {

using test::allClose;
using test::expectError;

constexpr double kScale = 0.17677669529663687;  // 1 / sqrt(32)

class CausalSoftmaxOpsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  at::TensorOptions options() const { return at::TensorOptions().dtype(GetParam()); }
  double rtol() const { return test::rtolFor(GetParam()); }
};

TEST_P(CausalSoftmaxOpsTest, ValuesAndGradientsMatchReferenceForAnyLeadingDims) {
  const std::vector<std::vector<int64_t>> shapes = {{5, 5}, {3, 4, 9}, {2, 2, 2, 7, 7}, {2, 0, 3}, {6, 1, 1}};
  for (const auto& shape : shapes) {
    SCOPED_TRACE(c10::str("shape ", c10::IntArrayRef(shape)));
    at::manual_seed(30);
    at::Tensor scores = (3 * at::randn(shape, options())).requires_grad_();
    const at::Tensor dprobs = at::randn(shape, options());
    const at::Tensor probs = causalSoftmax(scores, kScale);
    (probs * dprobs).sum().backward();

    at::Tensor scores_ref = test::leafDouble(scores);
    const at::Tensor probs_ref = test::referenceCausalSoftmax(scores_ref, kScale);
    (probs_ref * dprobs.to(at::kDouble)).sum().backward();
    EXPECT_EQ(probs.scalar_type(), GetParam());
    EXPECT_TRUE(allClose(probs, probs_ref, rtol(), 0));
    EXPECT_TRUE(allClose(scores.grad(), scores_ref.grad(), rtol(),
                         rtol() * test::causalSoftmaxGradScale(probs_ref, dprobs, kScale)));

    const at::Tensor masked = ~test::causalMask(shape.end()[-2], shape.end()[-1]).expand(shape);
    const int64_t masked_count = masked.sum().item<int64_t>();
    EXPECT_TRUE(at::equal(probs.masked_select(masked), at::zeros({masked_count}, options())));
    EXPECT_TRUE(at::equal(scores.grad().masked_select(masked), at::zeros({masked_count}, options())));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CausalSoftmaxOpsTest, ::testing::Values(at::kFloat, at::kDouble),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(CausalSoftmaxOpsTest, MaskedScoresAreNeverRead) {
  // NaN and inf above the diagonal would poison any sum or max that read them.
  at::manual_seed(31);
  const at::Tensor scores = at::randn({2, 6, 8}, at::kDouble);
  const at::Tensor poisoned = scores.masked_fill(~test::causalMask(6, 8), std::numeric_limits<double>::quiet_NaN())
                                  .masked_fill(~test::causalMask(6, 8).roll(1, 1) & ~test::causalMask(6, 8),
                                               std::numeric_limits<double>::infinity());
  EXPECT_TRUE(at::equal(causalSoftmax(poisoned, kScale), causalSoftmax(scores, kScale)));
}

TEST(CausalSoftmaxOpsTest, NonContiguousScoresGiveTheContiguousResult) {
  at::manual_seed(32);
  const at::Tensor scores = at::randn({9, 4, 9}, at::kDouble).transpose(0, 1);  // [4, 9, 9]
  ASSERT_FALSE(scores.is_contiguous());
  EXPECT_TRUE(at::equal(causalSoftmax(scores, kScale), causalSoftmax(scores.contiguous(), kScale)));
}

TEST(CausalSoftmaxOpsTest, DoubleBackwardIsRefused) {
  at::Tensor scores = at::randn({2, 4, 4}, at::kDouble).requires_grad_();
  const at::Tensor probs = causalSoftmax(scores, kScale);
  expectError(
      [&] {
        torch::autograd::grad({probs.pow(2).sum()}, {scores}, {}, /*retain_graph=*/true, /*create_graph=*/true);
      },
      "loom::causal_softmax: double backward is not supported");
}

TEST(CausalSoftmaxOpsTest, BadInputsNameTheProblem) {
  expectError([&] { causalSoftmax(at::randn({5}), kScale); },
              "loom::causal_softmax: scores must have at least 2 dims [..., q_len, k_len], got shape [5]");
  expectError([&] { causalSoftmax(at::randn({2, 5, 3}), kScale); },
              "loom::causal_softmax: scores has q_len 5 > k_len 3 (shape [2, 5, 3])");
  expectError([&] { causalSoftmax(at::randn({2, 3, 3}), std::numeric_limits<double>::infinity()); },
              "loom::causal_softmax: scale must be finite, got inf");
  expectError([&] { causalSoftmax(at::randn({2, 3, 3}).to(at::kHalf), kScale); },
              "loom::causal_softmax: no kernel for dtype Half on cpu");
}

TEST(CausalSoftmaxOpsTest, DispatcherCallEqualsDirectCall) {
  const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("loom::causal_softmax", "");
  at::manual_seed(33);
  at::Tensor scores = at::randn({3, 5, 8}).requires_grad_();
  const at::Tensor dprobs = at::randn({3, 5, 8});
  const at::Tensor probs = op.typed<at::Tensor(const at::Tensor&, double)>().call(scores, kScale);
  (probs * dprobs).sum().backward();
  const at::Tensor dscores = scores.grad().clone();
  scores.mutable_grad().reset();
  const at::Tensor probs_direct = causalSoftmax(scores, kScale);
  (probs_direct * dprobs).sum().backward();
  EXPECT_TRUE(at::equal(probs, probs_direct));
  EXPECT_TRUE(at::equal(dscores, scores.grad()));
}

}  // namespace
}  // namespace loom::kernels
