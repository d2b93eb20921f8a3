// The raw SwiGLU CPU kernels (kernels/cpu/swiglu.h) against model/mlp.cpp's
// silu(gate) * up evaluated in float64, extreme gates, and the determinism guarantee.
//
// Tolerances: y and dup are products (rtol 1e-5 for float, 1e-12 for double, atol 0);
// dgate = dy up s (1 + g (1 - s)) cancels near g = -1.28, so it also gets atol = rtol *
// swigluGateGradScale (model_ops_reference.h).
#include "kernels/cpu/swiglu.h"

#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/op_test_util.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::kernels::cpu {
namespace {

using test::allClose;

struct Outputs {
  at::Tensor y, dgate, dup;
};

template <typename T>
Outputs runKernels(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& dy) {
  const int64_t n = gate.numel();
  Outputs out{at::empty_like(gate), at::empty_like(gate), at::empty_like(gate)};
  swigluForward<T>(gate.data_ptr<T>(), up.data_ptr<T>(), out.y.data_ptr<T>(), n);
  swigluBackward<T>(dy.data_ptr<T>(), gate.data_ptr<T>(), up.data_ptr<T>(), out.dgate.data_ptr<T>(),
                    out.dup.data_ptr<T>(), n);
  return out;
}

/// Checks the kernels on given inputs; atol_values covers documented flushes to zero.
template <typename T>
void checkSwiglu(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& dy, double atol_values) {
  const double rtol = test::rtolFor(gate.scalar_type());
  const Outputs out = runKernels<T>(gate, up, dy);
  at::Tensor gate_ref = test::leafDouble(gate);
  at::Tensor up_ref = test::leafDouble(up);
  const at::Tensor y_ref = test::referenceSwiglu(gate_ref, up_ref);
  (y_ref * dy.to(at::kDouble)).sum().backward();
  EXPECT_TRUE(allClose(out.y, y_ref, rtol, atol_values));
  EXPECT_TRUE(allClose(out.dup, up_ref.grad(), rtol, atol_values));
  EXPECT_TRUE(allClose(out.dgate, gate_ref.grad(), rtol,
                       rtol * test::swigluGateGradScale(gate, up, dy) + atol_values));

  // One gradient alone is the same as with both.
  at::Tensor dgate_only = at::empty_like(gate);
  at::Tensor dup_only = at::empty_like(gate);
  swigluBackward<T>(dy.data_ptr<T>(), gate.data_ptr<T>(), up.data_ptr<T>(), dgate_only.data_ptr<T>(), nullptr,
                    gate.numel());
  swigluBackward<T>(dy.data_ptr<T>(), gate.data_ptr<T>(), up.data_ptr<T>(), nullptr, dup_only.data_ptr<T>(),
                    gate.numel());
  EXPECT_TRUE(at::equal(dgate_only, out.dgate));
  EXPECT_TRUE(at::equal(dup_only, out.dup));
}

template <typename T>
void checkRandom(int64_t n) {
  at::manual_seed(n);
  const at::ScalarType dtype = c10::CppTypeToScalarType<T>::value;
  // Gates of magnitude ~3 cover both branches of the sigmoid and its saturation.
  checkSwiglu<T>(3 * at::randn({n}, dtype), at::randn({n}, dtype), at::randn({n}, dtype), 0);
}

class CpuSwigluTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(CpuSwigluTest, FloatMatchesReference) {
  checkRandom<float>(GetParam());
}

TEST_P(CpuSwigluTest, DoubleMatchesReference) {
  checkRandom<double>(GetParam());
}

// Below, at and off the vector widths; around the 2048-element block; several
// parallel tasks.
INSTANTIATE_TEST_SUITE_P(Sizes, CpuSwigluTest, ::testing::Values(0, 1, 3, 4, 7, 8, 9, 33, 2047, 2049, 70001),
                         [](const ::testing::TestParamInfo<int64_t>& info) { return std::to_string(info.param); });

TEST(CpuSwigluTest, ExtremeGatesStayFinite) {
  // exp(-|g|) never overflows; for g below about -87.3 (float) it flushes to 0, so y,
  // dup and dgate are 0 where their true values are below 1.2e-38 * max|g up dy| < 1e-33.
  const at::Tensor gate_d = at::tensor({-1e4, -100.0, -80.0, -20.0, -1.2784645, -1e-3, 0.0, 1e-3, 20.0, 80.0, 1e4},
                                       at::kDouble);
  const at::Tensor up_d = at::linspace(-2, 2, gate_d.numel(), at::kDouble);
  const at::Tensor dy_d = at::linspace(1, 3, gate_d.numel(), at::kDouble);
  checkSwiglu<double>(gate_d, up_d, dy_d, 0);
  checkSwiglu<float>(gate_d.to(at::kFloat), up_d.to(at::kFloat), dy_d.to(at::kFloat), 1e-33);
}

TEST(CpuSwigluTest, ResultsAreBitwiseIndependentOfThreadCount) {
  const test::ThreadCountGuard guard;
  at::manual_seed(12);
  // The tiny model's MLP hidden activations [2048, 384], plus a partial last vector.
  const int64_t n = 2048 * 384 + 5;
  const at::Tensor gate = 3 * at::randn({n});
  const at::Tensor up = at::randn({n});
  const at::Tensor dy = at::randn({n});
  at::set_num_threads(1);
  const Outputs one = runKernels<float>(gate, up, dy);
  at::set_num_threads(2);
  ASSERT_EQ(at::get_num_threads(), 2);
  const Outputs two = runKernels<float>(gate, up, dy);
  EXPECT_TRUE(at::equal(one.y, two.y));
  EXPECT_TRUE(at::equal(one.dgate, two.dgate));
  EXPECT_TRUE(at::equal(one.dup, two.dup));
}

}  // namespace
}  // namespace loom::kernels::cpu
