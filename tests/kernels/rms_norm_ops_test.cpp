// The differentiable torch ops (kernels/torch/rms_norm_ops.h): values and gradients
// against autograd through the plain-libtorch reference in float64 (rtol 1e-5 for
// float32 inputs, 1e-12 for float64), any leading dims, non-contiguous inputs,
// partially used outputs, and the error messages.
#include "kernels/torch/rms_norm_ops.h"

#include "tests/kernels/rms_norm_reference.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <functional>
#include <string>
#include <vector>

namespace loom::kernels {
namespace {

using test::allClose;

constexpr double kEps = 1e-5;

double rtolFor(at::ScalarType dtype) {
  return dtype == at::kFloat ? 1e-5 : 1e-12;
}

at::Tensor leafDouble(const at::Tensor& t) {
  return t.detach().to(at::kDouble).requires_grad_();
}

/// A gradient check: atol is rtol times the magnitude of the gradient's terms.
::testing::AssertionResult gradClose(const at::Tensor& actual, const at::Tensor& expected, double rtol, double scale) {
  return allClose(actual, expected, rtol, rtol * scale);
}

class RmsNormOpsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  at::TensorOptions options() const { return at::TensorOptions().dtype(GetParam()); }
  double rtol() const { return rtolFor(GetParam()); }
};

TEST_P(RmsNormOpsTest, ValuesAndGradientsMatchReferenceForAnyLeadingDims) {
  const std::vector<std::vector<int64_t>> shapes = {{37}, {4, 1, 64}, {2, 3, 5, 37}, {3, 0, 6}};
  for (const auto& shape : shapes) {
    SCOPED_TRACE(c10::str("shape ", c10::IntArrayRef(shape)));
    at::manual_seed(11);
    const int64_t cols = shape.back();
    at::Tensor x = at::randn(shape, options()).requires_grad_();
    at::Tensor w = (1 + 0.5 * at::randn({cols}, options())).requires_grad_();
    const at::Tensor dy = at::randn(shape, options());
    at::Tensor y = rmsNorm(x, w, kEps);
    (y * dy).sum().backward();

    at::Tensor x_ref = leafDouble(x);
    at::Tensor w_ref = leafDouble(w);
    at::Tensor y_ref = test::referenceRmsNorm(x_ref, w_ref, kEps);
    (y_ref * dy.to(at::kDouble)).sum().backward();
    EXPECT_EQ(y.scalar_type(), GetParam());
    EXPECT_TRUE(allClose(y, y_ref, rtol(), 0));
    const test::GradientScales scales = test::gradientScales(x, w, dy, kEps);
    EXPECT_TRUE(gradClose(x.grad(), x_ref.grad(), rtol(), scales.dx));
    EXPECT_TRUE(gradClose(w.grad(), w_ref.grad(), rtol(), scales.dweight));
  }
}

TEST_P(RmsNormOpsTest, FusedOutputsAndAllGradientsMatchReference) {
  at::manual_seed(12);
  at::Tensor x = at::randn({3, 5, 48}, options()).requires_grad_();
  at::Tensor residual = at::randn({3, 5, 48}, options()).requires_grad_();
  at::Tensor w = (1 + 0.5 * at::randn({48}, options())).requires_grad_();
  const at::Tensor dy = at::randn({3, 5, 48}, options());
  const at::Tensor dres = at::randn({3, 5, 48}, options());
  auto [out, residual_out] = fusedAddRmsNorm(x, residual, w, kEps);
  ((out * dy).sum() + (residual_out * dres).sum()).backward();

  at::Tensor x_ref = leafDouble(x);
  at::Tensor r_ref = leafDouble(residual);
  at::Tensor w_ref = leafDouble(w);
  auto [out_ref, residual_out_ref] = test::referenceFusedAddRmsNorm(x_ref, r_ref, w_ref, kEps);
  ((out_ref * dy.to(at::kDouble)).sum() + (residual_out_ref * dres.to(at::kDouble)).sum()).backward();
  EXPECT_TRUE(allClose(out, out_ref, rtol(), 0));
  EXPECT_TRUE(allClose(residual_out, residual_out_ref, rtol(), 0));
  const test::GradientScales scales = test::gradientScales(residual_out_ref, w, dy, kEps);
  EXPECT_TRUE(gradClose(x.grad(), x_ref.grad(), rtol(), scales.dx));
  EXPECT_TRUE(gradClose(residual.grad(), r_ref.grad(), rtol(), scales.dx));
  EXPECT_TRUE(gradClose(w.grad(), w_ref.grad(), rtol(), scales.dweight));
}

// rmsNormBackward (no autograd): the reference's gradients of rmsNorm(r) with
// the output gradient dy, plus dres in dx (as the fused op's residual_out gradient).
TEST_P(RmsNormOpsTest, BackwardWithoutAutogradMatchesReference) {
  at::manual_seed(13);
  const at::Tensor r = at::randn({7, 48}, options());
  const at::Tensor w = 1 + 0.5 * at::randn({48}, options());
  const at::Tensor dy = at::randn({7, 48}, options());
  const at::Tensor dres = at::randn({7, 48}, options());
  const auto [dx, dw] = rmsNormBackward(dy, dres, r, w, kEps);
  const auto [dx_alone, dw_alone] = rmsNormBackward(dy, at::Tensor(), r, w, kEps);

  at::Tensor r_ref = leafDouble(r);
  at::Tensor w_ref = leafDouble(w);
  (test::referenceRmsNorm(r_ref, w_ref, kEps) * dy.to(at::kDouble)).sum().backward();
  const test::GradientScales scales = test::gradientScales(r_ref.detach(), w, dy, kEps);
  EXPECT_TRUE(gradClose(dx, r_ref.grad() + dres.to(at::kDouble), rtol(), scales.dx));
  EXPECT_TRUE(gradClose(dx_alone, r_ref.grad(), rtol(), scales.dx));
  EXPECT_TRUE(gradClose(dw, w_ref.grad(), rtol(), scales.dweight));
  EXPECT_TRUE(gradClose(dw_alone, w_ref.grad(), rtol(), scales.dweight));
  EXPECT_THROW(rmsNormBackward(dy.narrow(0, 0, 3), at::Tensor(), r, w, kEps), c10::Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, RmsNormOpsTest, ::testing::Values(at::kFloat, at::kDouble),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

/// Runs the fused op on fresh leaves, uses only the outputs `use` selects, and returns
/// the grads of (x, residual, weight), next to the same through the reference.
struct FusedGrads {
  at::Tensor x, residual, weight;
};

struct FusedCase {
  FusedGrads loom, reference;
  test::GradientScales scales;  ///< of the norm at x + residual
};

FusedCase fusedGradsUsing(bool use_out, bool use_residual_out) {
  at::manual_seed(13);
  const at::Tensor x0 = at::randn({6, 40}, at::kDouble);
  const at::Tensor r0 = at::randn({6, 40}, at::kDouble);
  const at::Tensor w0 = 1 + 0.5 * at::randn({40}, at::kDouble);
  const at::Tensor dy = at::randn({6, 40}, at::kDouble);
  const at::Tensor dres = at::randn({6, 40}, at::kDouble);
  auto run = [&](auto op) {
    at::Tensor x = x0.clone().requires_grad_();
    at::Tensor r = r0.clone().requires_grad_();
    at::Tensor w = w0.clone().requires_grad_();
    auto [out, residual_out] = op(x, r, w);
    at::Tensor loss = at::zeros({}, at::kDouble);
    if (use_out) {
      loss = loss + (out * dy).sum();
    }
    if (use_residual_out) {
      loss = loss + (residual_out * dres).sum();
    }
    loss.backward();
    return FusedGrads{x.grad(), r.grad(), w.grad()};
  };
  return {run([](auto& x, auto& r, auto& w) { return fusedAddRmsNorm(x, r, w, kEps); }),
          run([](auto& x, auto& r, auto& w) { return test::referenceFusedAddRmsNorm(x, r, w, kEps); }),
          test::gradientScales(x0 + r0, w0, dy, kEps)};
}

TEST(RmsNormOpsTest, FusedGradientsWhenOnlyOneOutputIsUsed) {
  for (bool use_out : {true, false}) {
    SCOPED_TRACE(use_out ? "only out used" : "only residual_out used");
    const FusedCase c = fusedGradsUsing(use_out, !use_out);
    EXPECT_TRUE(gradClose(c.loom.x, c.reference.x, 1e-12, c.scales.dx));
    EXPECT_TRUE(gradClose(c.loom.residual, c.reference.residual, 1e-12, c.scales.dx));
    if (use_out) {
      EXPECT_TRUE(gradClose(c.loom.weight, c.reference.weight, 1e-12, c.scales.dweight));
    } else {
      // The weight does not reach residual_out: no gradient (undefined means zero).
      EXPECT_FALSE(c.loom.weight.defined() && c.loom.weight.abs().max().item<double>() != 0);
    }
  }
}

TEST(RmsNormOpsTest, NonContiguousInputsGiveTheContiguousResult) {
  at::manual_seed(14);
  const at::Tensor base = at::randn({24, 10}, at::kDouble);
  const at::Tensor x = base.t();  // [10, 24], strides (1, 10)
  const at::Tensor w_wide = at::randn({48}, at::kDouble);
  const at::Tensor w = w_wide.slice(0, 0, 48, 2);  // stride 2
  ASSERT_FALSE(x.is_contiguous());
  ASSERT_FALSE(w.is_contiguous());
  EXPECT_TRUE(at::equal(rmsNorm(x, w, kEps), rmsNorm(x.contiguous(), w.contiguous(), kEps)));
  auto [out, res] = fusedAddRmsNorm(x, x, w, kEps);
  auto [out_c, res_c] = fusedAddRmsNorm(x.contiguous(), x.contiguous(), w.contiguous(), kEps);
  EXPECT_TRUE(at::equal(out, out_c));
  EXPECT_TRUE(at::equal(res, res_c));
}

TEST(RmsNormOpsTest, WeightWithoutGradGetsNone) {
  at::manual_seed(15);
  at::Tensor x = at::randn({4, 16}, at::kDouble).requires_grad_();
  const at::Tensor w = at::randn({16}, at::kDouble);
  rmsNorm(x, w, kEps).sum().backward();
  at::Tensor x_ref = leafDouble(x);
  test::referenceRmsNorm(x_ref, w, kEps).sum().backward();
  EXPECT_FALSE(w.grad().defined());
  const test::GradientScales scales = test::gradientScales(x, w, at::ones_like(x), kEps);
  EXPECT_TRUE(gradClose(x.grad(), x_ref.grad(), 1e-12, scales.dx));
}

TEST(RmsNormOpsTest, DoubleBackwardIsRefused) {
  at::Tensor x = at::randn({2, 8}, at::kDouble).requires_grad_();
  const at::Tensor w = at::ones({8}, at::kDouble);
  const at::Tensor y = rmsNorm(x, w, kEps);
  try {
    torch::autograd::grad({y.pow(2).sum()}, {x}, {}, /*retain_graph=*/true,
                          /*create_graph=*/true);
    FAIL() << "create_graph=True did not throw";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("loom::rms_norm: double backward"), std::string::npos)
        << e.what_without_backtrace();
  }
}

void expectError(const std::function<void()>& call, const std::string& message) {
  try {
    call();
    ADD_FAILURE() << "no error; expected: " << message;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(message), std::string::npos)
        << "got: " << e.what_without_backtrace() << "\nexpected to contain: " << message;
  }
}

TEST(RmsNormOpsTest, BadInputsNameTheProblem) {
  const at::Tensor x = at::randn({4, 128});
  const at::Tensor w = at::ones({128});
  expectError([&] { rmsNorm(x, at::ones({64}), kEps); },
              "loom::rms_norm: weight has 64 elements but x's last dim is 128");
  expectError([&] { rmsNorm(x, at::ones({2, 64}), kEps); }, "loom::rms_norm: weight must be 1-D, got shape [2, 64]");
  expectError([&] { rmsNorm(at::randn({}), at::ones({1}), kEps); }, "loom::rms_norm: x must have at least one dim");
  expectError([&] { rmsNorm(at::randn({3, 0}), at::ones({0}), kEps); }, "loom::rms_norm: x's last dim is 0");
  expectError([&] { rmsNorm(x, w.to(at::kDouble), kEps); }, "loom::rms_norm: weight has dtype Double but x has Float");
  expectError([&] { rmsNorm(x.to(at::kInt), w.to(at::kInt), kEps); }, "loom::rms_norm: no kernel for dtype Int on cpu");
  expectError([&] { rmsNorm(x, w, -1.0); }, "loom::rms_norm: eps must be finite and >= 0, got -1");
  expectError(
      [&] {
        fusedAddRmsNorm(x, at::randn({4, 127}), w, kEps);
      },
      "loom::fused_add_rms_norm: residual has shape [4, 127] but x has shape [4, 128]");
  expectError([&] { fusedAddRmsNorm(x, x.to(at::kDouble), w, kEps); },
              "loom::fused_add_rms_norm: residual has dtype Double but x has Float");
}

}  // namespace
}  // namespace loom::kernels
