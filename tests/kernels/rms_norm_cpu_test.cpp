// The raw CPU kernels against the plain-libtorch reference evaluated in float64
// (values, and gradients by autograd through the reference), and the determinism
// guarantee of kernels/cpu/rms_norm.h.
//
// Tolerances: float kernels rtol 1e-5, double kernels rtol 1e-12; gradients also get
// an atol of rtol times the magnitude of their terms (tensor_close.h).
#include "kernels/cpu/rms_norm.h"

#include "tests/kernels/rms_norm_reference.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::kernels::cpu {
namespace {

using test::allClose;

constexpr double kEps = 1e-5;

template <typename T>
constexpr double kRtol = 0;
template <>
constexpr double kRtol<float> = 1e-5;
template <>
constexpr double kRtol<double> = 1e-12;

struct Shape {
  int64_t rows;
  int64_t cols;
};

std::string shapeName(const ::testing::TestParamInfo<Shape>& info) {
  return std::to_string(info.param.rows) + "x" + std::to_string(info.param.cols);
}

template <typename T>
at::TensorOptions optionsFor() {
  return at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
}

/// Random inputs for one case; weight around 1 with spread, so dweight matters.
template <typename T>
struct Inputs {
  Inputs(int64_t rows, int64_t cols)
      : x(at::randn({rows, cols}, optionsFor<T>())),
        residual(at::randn({rows, cols}, optionsFor<T>())),
        weight(1 + 0.5 * at::randn({cols}, optionsFor<T>())),
        dy(at::randn({rows, cols}, optionsFor<T>())),
        dresidual_out(at::randn({rows, cols}, optionsFor<T>())) {}
  at::Tensor x, residual, weight, dy, dresidual_out;
};

at::Tensor leafDouble(const at::Tensor& t) {
  return t.to(at::kDouble).requires_grad_();
}

template <typename T>
T* data(const at::Tensor& t) {
  return t.data_ptr<T>();
}

template <typename T>
void checkRmsNorm(int64_t rows, int64_t cols) {
  at::manual_seed(rows * 7919 + cols);
  const Inputs<T> in(rows, cols);
  at::Tensor y = at::empty_like(in.x);
  at::Tensor rstd = at::empty({rows}, optionsFor<T>());
  rmsNormForward<T>(data<T>(in.x), data<T>(in.weight), data<T>(y), data<T>(rstd), rows, cols, kEps);

  at::Tensor x_ref = leafDouble(in.x);
  at::Tensor w_ref = leafDouble(in.weight);
  at::Tensor y_ref = test::referenceRmsNorm(x_ref, w_ref, kEps);
  (y_ref * in.dy.to(at::kDouble)).sum().backward();
  const at::Tensor rstd_ref = at::rsqrt(x_ref.detach().pow(2).mean(-1) + kEps);
  EXPECT_TRUE(allClose(y, y_ref, kRtol<T>, 0));
  EXPECT_TRUE(allClose(rstd, rstd_ref, kRtol<T>, 0));

  at::Tensor dx = at::empty_like(in.x);
  at::Tensor dw = at::empty_like(in.weight);
  rmsNormBackward<T>(data<T>(in.dy), data<T>(in.x), data<T>(in.weight), data<T>(rstd), data<T>(dx), data<T>(dw), rows,
                     cols);
  const test::GradientScales scales = test::gradientScales(in.x, in.weight, in.dy, kEps);
  EXPECT_TRUE(allClose(dx, x_ref.grad(), kRtol<T>, kRtol<T> * scales.dx));
  EXPECT_TRUE(allClose(dw, w_ref.grad(), kRtol<T>, kRtol<T> * scales.dweight));

  // Without dweight, dx is unchanged.
  at::Tensor dx_only = at::empty_like(in.x);
  rmsNormBackward<T>(data<T>(in.dy), data<T>(in.x), data<T>(in.weight), data<T>(rstd), data<T>(dx_only), nullptr, rows,
                     cols);
  EXPECT_TRUE(at::equal(dx_only, dx));
}

template <typename T>
void checkFusedAddRmsNorm(int64_t rows, int64_t cols) {
  at::manual_seed(rows * 104729 + cols);
  const Inputs<T> in(rows, cols);
  at::Tensor y = at::empty_like(in.x);
  at::Tensor residual_out = at::empty_like(in.x);
  at::Tensor rstd = at::empty({rows}, optionsFor<T>());
  fusedAddRmsNormForward<T>(data<T>(in.x), data<T>(in.residual), data<T>(in.weight), data<T>(y), data<T>(residual_out),
                            data<T>(rstd), rows, cols, kEps);

  at::Tensor x_ref = leafDouble(in.x);
  at::Tensor r_ref = leafDouble(in.residual);
  at::Tensor w_ref = leafDouble(in.weight);
  auto [y_ref, residual_out_ref] = test::referenceFusedAddRmsNorm(x_ref, r_ref, w_ref, kEps);
  ((y_ref * in.dy.to(at::kDouble)).sum() + (residual_out_ref * in.dresidual_out.to(at::kDouble)).sum()).backward();
  EXPECT_TRUE(allClose(y, y_ref, kRtol<T>, 0));
  EXPECT_TRUE(allClose(residual_out, residual_out_ref, kRtol<T>, 0));

  at::Tensor dx = at::empty_like(in.x);
  at::Tensor dw = at::empty_like(in.weight);
  fusedAddRmsNormBackward<T>(data<T>(in.dy), data<T>(in.dresidual_out), data<T>(residual_out), data<T>(in.weight),
                             data<T>(rstd), data<T>(dx), data<T>(dw), rows, cols);
  const test::GradientScales scales = test::gradientScales(residual_out_ref, in.weight, in.dy, kEps);
  EXPECT_TRUE(allClose(dx, x_ref.grad(), kRtol<T>, kRtol<T> * scales.dx));
  EXPECT_TRUE(allClose(dx, r_ref.grad(), kRtol<T>, kRtol<T> * scales.dx));
  EXPECT_TRUE(allClose(dw, w_ref.grad(), kRtol<T>, kRtol<T> * scales.dweight));

  // A null dresidual_out means zero: dx is then the plain backward at residual_out.
  at::Tensor dx_fused = at::empty_like(in.x);
  at::Tensor dx_plain = at::empty_like(in.x);
  fusedAddRmsNormBackward<T>(data<T>(in.dy), nullptr, data<T>(residual_out), data<T>(in.weight), data<T>(rstd),
                             data<T>(dx_fused), nullptr, rows, cols);
  rmsNormBackward<T>(data<T>(in.dy), data<T>(residual_out), data<T>(in.weight), data<T>(rstd), data<T>(dx_plain),
                     nullptr, rows, cols);
  EXPECT_TRUE(at::equal(dx_fused, dx_plain));
}

class CpuRmsNormTest : public ::testing::TestWithParam<Shape> {};

TEST_P(CpuRmsNormTest, FloatMatchesReference) {
  checkRmsNorm<float>(GetParam().rows, GetParam().cols);
}

TEST_P(CpuRmsNormTest, DoubleMatchesReference) {
  checkRmsNorm<double>(GetParam().rows, GetParam().cols);
}

TEST_P(CpuRmsNormTest, FusedFloatMatchesReference) {
  checkFusedAddRmsNorm<float>(GetParam().rows, GetParam().cols);
}

TEST_P(CpuRmsNormTest, FusedDoubleMatchesReference) {
  checkFusedAddRmsNorm<double>(GetParam().rows, GetParam().cols);
}

// Widths around and off the vector widths (8 floats, 4 doubles; 32 floats per
// unrolled step), one row, one column, long rows, and many rows (several dweight blocks
// and parallel tasks).
INSTANTIATE_TEST_SUITE_P(Shapes, CpuRmsNormTest,
                         ::testing::Values(Shape{1, 1}, Shape{7, 1}, Shape{1, 7}, Shape{3, 8}, Shape{5, 31},
                                           Shape{5, 33}, Shape{17, 100}, Shape{64, 128}, Shape{2, 8195},
                                           Shape{2048, 128}, Shape{1000, 257}),
                         shapeName);

TEST(CpuRmsNormTest, ZeroRowsWriteZeroWeightGradient) {
  const at::Tensor w = at::ones({5});
  at::Tensor dw = at::full({5}, 3.0f);
  float dummy = 0;
  rmsNormBackward<float>(&dummy, &dummy, data<float>(w), &dummy, &dummy, data<float>(dw), 0, 5);
  EXPECT_TRUE(at::equal(dw, at::zeros({5})));
}

/// Restores the intra-op thread count when a test changes it.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(at::get_num_threads()) {}
  ~ThreadCountGuard() { at::set_num_threads(saved_); }

 private:
  int saved_;
};

struct AllOutputs {
  at::Tensor y, rstd, dx, dw, fused_y, residual_out, fused_dx, fused_dw;
};

AllOutputs runAll(const Inputs<float>& in) {
  const int64_t rows = in.x.size(0);
  const int64_t cols = in.x.size(1);
  AllOutputs out{at::empty_like(in.x), at::empty({rows}),    at::empty_like(in.x), at::empty_like(in.weight),
                 at::empty_like(in.x), at::empty_like(in.x), at::empty_like(in.x), at::empty_like(in.weight)};
  rmsNormForward<float>(data<float>(in.x), data<float>(in.weight), data<float>(out.y), data<float>(out.rstd), rows,
                        cols, kEps);
  rmsNormBackward<float>(data<float>(in.dy), data<float>(in.x), data<float>(in.weight), data<float>(out.rstd),
                         data<float>(out.dx), data<float>(out.dw), rows, cols);
  at::Tensor fused_rstd = at::empty({rows});
  fusedAddRmsNormForward<float>(data<float>(in.x), data<float>(in.residual), data<float>(in.weight),
                                data<float>(out.fused_y), data<float>(out.residual_out), data<float>(fused_rstd), rows,
                                cols, kEps);
  fusedAddRmsNormBackward<float>(data<float>(in.dy), data<float>(in.dresidual_out), data<float>(out.residual_out),
                                 data<float>(in.weight), data<float>(fused_rstd), data<float>(out.fused_dx),
                                 data<float>(out.fused_dw), rows, cols);
  return out;
}

TEST(CpuRmsNormTest, ResultsAreBitwiseIndependentOfThreadCount) {
  const ThreadCountGuard guard;
  at::manual_seed(5);
  // Large enough that both the row loops and the dweight blocks split over threads.
  const Inputs<float> in(3000, 257);
  at::set_num_threads(1);
  const AllOutputs one = runAll(in);
  at::set_num_threads(2);
  ASSERT_EQ(at::get_num_threads(), 2);
  const AllOutputs two = runAll(in);
  EXPECT_TRUE(at::equal(one.y, two.y));
  EXPECT_TRUE(at::equal(one.rstd, two.rstd));
  EXPECT_TRUE(at::equal(one.dx, two.dx));
  EXPECT_TRUE(at::equal(one.dw, two.dw));
  EXPECT_TRUE(at::equal(one.fused_y, two.fused_y));
  EXPECT_TRUE(at::equal(one.residual_out, two.residual_out));
  EXPECT_TRUE(at::equal(one.fused_dx, two.fused_dx));
  EXPECT_TRUE(at::equal(one.fused_dw, two.fused_dw));
}

}  // namespace
}  // namespace loom::kernels::cpu
