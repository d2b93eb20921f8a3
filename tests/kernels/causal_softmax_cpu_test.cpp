// The raw causal softmax CPU kernels (kernels/cpu/causal_softmax.h) against
// model/attention.cpp's scale + mask-add + softmax composite evaluated in float64,
// including q_len < k_len, exact zeros in the masked part of probs and dscores, and
// the determinism guarantee.
//
// Tolerances: probabilities are relative (rtol 1e-5 for float, 1e-12 for double,
// atol 0); dscores = scale p (dp - sum(dp p)) cancels, so it also gets atol = rtol *
// causalSoftmaxGradScale (model_ops_reference.h).
#include "kernels/cpu/causal_softmax.h"

#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/op_test_util.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::kernels::cpu {
namespace {

using test::allClose;

struct SoftmaxCase {
  int64_t matrices, q_len, k_len;
};

std::string caseName(const ::testing::TestParamInfo<SoftmaxCase>& info) {
  return std::to_string(info.param.matrices) + "x" + std::to_string(info.param.q_len) + "x" +
         std::to_string(info.param.k_len);
}

struct Outputs {
  at::Tensor probs, dscores;
};

template <typename T>
Outputs runKernels(const at::Tensor& scores, const at::Tensor& dprobs, double scale) {
  const int64_t matrices = scores.size(0);
  const int64_t q_len = scores.size(1);
  const int64_t k_len = scores.size(2);
  // Poisoned outputs: the masked zeros must be written, not inherited.
  Outputs out{at::full_like(scores, 7.0), at::full_like(scores, 7.0)};
  causalSoftmaxForward<T>(scores.data_ptr<T>(), out.probs.data_ptr<T>(), matrices, q_len, k_len, scale);
  causalSoftmaxBackward<T>(dprobs.data_ptr<T>(), out.probs.data_ptr<T>(), out.dscores.data_ptr<T>(), matrices, q_len,
                           k_len, scale);
  return out;
}

template <typename T>
void checkSoftmax(const SoftmaxCase& c, double scale, double magnitude, double atol_values) {
  at::manual_seed(c.matrices * 10007 + c.q_len * 101 + c.k_len);
  const at::ScalarType dtype = c10::CppTypeToScalarType<T>::value;
  const double rtol = test::rtolFor(dtype);
  const at::Tensor scores = magnitude * at::randn({c.matrices, c.q_len, c.k_len}, dtype);
  const at::Tensor dprobs = at::randn({c.matrices, c.q_len, c.k_len}, dtype);
  const Outputs out = runKernels<T>(scores, dprobs, scale);

  at::Tensor scores_ref = test::leafDouble(scores);
  const at::Tensor probs_ref = test::referenceCausalSoftmax(scores_ref, scale);
  (probs_ref * dprobs.to(at::kDouble)).sum().backward();
  EXPECT_TRUE(allClose(out.probs, probs_ref, rtol, atol_values));
  EXPECT_TRUE(
      allClose(out.dscores, scores_ref.grad(), rtol, rtol * test::causalSoftmaxGradScale(probs_ref, dprobs, scale)));

  const at::Tensor masked = ~test::causalMask(c.q_len, c.k_len).expand_as(scores);
  EXPECT_TRUE(at::equal(out.probs.masked_select(masked), at::zeros({masked.sum().item<int64_t>()}, dtype)));
  EXPECT_TRUE(at::equal(out.dscores.masked_select(masked), at::zeros({masked.sum().item<int64_t>()}, dtype)));
}

class CpuCausalSoftmaxTest : public ::testing::TestWithParam<SoftmaxCase> {};

// The tiny model's scale 1/sqrt(32) on scores of magnitude ~3.
constexpr double kScale = 0.17677669529663687;

TEST_P(CpuCausalSoftmaxTest, FloatMatchesReference) {
  checkSoftmax<float>(GetParam(), kScale, 3.0, 0);
}

TEST_P(CpuCausalSoftmaxTest, DoubleMatchesReference) {
  checkSoftmax<double>(GetParam(), kScale, 3.0, 0);
}

// Square and q_len < k_len (queries at the end of the keys); row lengths below, at and
// off the vector widths and the 4-vector unroll (32 floats, 16 doubles); one key.
INSTANTIATE_TEST_SUITE_P(Shapes, CpuCausalSoftmaxTest,
                         ::testing::Values(SoftmaxCase{1, 1, 1}, SoftmaxCase{2, 1, 9}, SoftmaxCase{3, 5, 5},
                                           SoftmaxCase{2, 7, 40}, SoftmaxCase{4, 33, 33}, SoftmaxCase{2, 17, 130},
                                           SoftmaxCase{1, 64, 200}, SoftmaxCase{0, 4, 4}, SoftmaxCase{3, 0, 6}),
                         caseName);

TEST(CpuCausalSoftmaxTest, NegativeAndUnitScales) {
  for (double scale : {-0.5, 1.0}) {
    SCOPED_TRACE(c10::str("scale ", scale));
    checkSoftmax<double>(SoftmaxCase{2, 9, 12}, scale, 1.0, 0);
  }
}

TEST(CpuCausalSoftmaxTest, LargeScoresStayFiniteAndStable) {
  // Scores of ~1e3: exp(scale * s) overflows without the max subtraction, and most
  // probabilities underflow; those below 1.2e-38 flush to 0 in float (simd_math.h).
  checkSoftmax<float>(SoftmaxCase{2, 20, 24}, 1.0, 1000.0, 1.2e-38);
  checkSoftmax<double>(SoftmaxCase{2, 20, 24}, 1.0, 1000.0, 2.3e-308);
}

TEST(CpuCausalSoftmaxTest, ResultsAreBitwiseIndependentOfThreadCount) {
  const test::ThreadCountGuard guard;
  at::manual_seed(11);
  // The tiny model's attention: [16 * 2 * 2, 128, 128], many parallel tasks.
  const at::Tensor scores = at::randn({64, 128, 128});
  const at::Tensor dprobs = at::randn({64, 128, 128});
  at::set_num_threads(1);
  const Outputs one = runKernels<float>(scores, dprobs, kScale);
  at::set_num_threads(2);
  ASSERT_EQ(at::get_num_threads(), 2);
  const Outputs two = runKernels<float>(scores, dprobs, kScale);
  EXPECT_TRUE(at::equal(one.probs, two.probs));
  EXPECT_TRUE(at::equal(one.dscores, two.dscores));
}

}  // namespace
}  // namespace loom::kernels::cpu
