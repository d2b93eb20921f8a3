// The raw RoPE CPU kernels (kernels/cpu/rope.h) against model/rope.cpp's composite
// evaluated in float64 on the same table values, for contiguous and strided inputs,
// and the determinism guarantee.
//
// Tolerance: each output is x[2i] c -/+ x[2i+1] s, a sum of two products that may
// cancel, so |error| <= rtol * |expected| + rtol * max|x| (|c|, |s| <= 1), with rtol
// 1e-5 for float and 1e-12 for double; the backward likewise with max|dy|.
#include "kernels/cpu/rope.h"

#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/op_test_util.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::kernels::cpu {
namespace {

using test::allClose;

/// Angles p * 10000^(-2i / hd) for p < positions, computed in double and stored in
/// `dtype`, as model/rope.cpp does for float32.
struct Tables {
  Tables(int64_t positions, int64_t head_dim, at::ScalarType dtype) {
    const at::Tensor inv_freq =
        at::pow(10000.0, at::arange(0, head_dim / 2, at::kDouble) * (-2.0 / static_cast<double>(head_dim)));
    const at::Tensor angles = at::outer(at::arange(positions, at::kDouble), inv_freq);
    cos = angles.cos().to(dtype);
    sin = angles.sin().to(dtype);
  }
  at::Tensor cos, sin;
};

RopeLayout layoutOf(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2)};
}

struct RopeCase {
  int64_t batch, seq, heads, head_dim, start_pos;
};

std::string caseName(const ::testing::TestParamInfo<RopeCase>& info) {
  const RopeCase& c = info.param;
  return std::to_string(c.batch) + "x" + std::to_string(c.seq) + "x" + std::to_string(c.heads) + "x" +
         std::to_string(c.head_dim) + "_at" + std::to_string(c.start_pos);
}

/// Runs both kernels on x (any strides, contiguous last dim) and checks them.
template <typename T>
void checkRope(const at::Tensor& x, int64_t start_pos) {
  const int64_t seq = x.size(1);
  const int64_t hd = x.size(3);
  const at::ScalarType dtype = c10::CppTypeToScalarType<T>::value;
  const double rtol = test::rtolFor(dtype);
  const Tables tables(start_pos + seq + 3, hd, dtype);
  const at::Tensor cos_rows = tables.cos.narrow(0, start_pos, seq).contiguous();
  const at::Tensor sin_rows = tables.sin.narrow(0, start_pos, seq).contiguous();
  const at::Tensor dy = at::randn(x.sizes(), x.options());

  at::Tensor y = at::empty(x.sizes(), x.options());
  ropeForward<T>(x.data_ptr<T>(), layoutOf(x), cos_rows.data_ptr<T>(), sin_rows.data_ptr<T>(), y.data_ptr<T>());
  at::Tensor dx = at::empty(x.sizes(), x.options());
  ropeBackward<T>(dy.data_ptr<T>(), layoutOf(dy), cos_rows.data_ptr<T>(), sin_rows.data_ptr<T>(), dx.data_ptr<T>());

  at::Tensor x_ref = test::leafDouble(x);
  const at::Tensor y_ref = test::referenceRope(x_ref, tables.cos, tables.sin, start_pos);
  (y_ref * dy.to(at::kDouble)).sum().backward();
  const double x_scale = x.numel() == 0 ? 0 : x.abs().max().item<double>();
  const double dy_scale = dy.numel() == 0 ? 0 : dy.abs().max().item<double>();
  EXPECT_TRUE(allClose(y, y_ref, rtol, rtol * x_scale));
  EXPECT_TRUE(allClose(dx, x_ref.grad(), rtol, rtol * dy_scale));
}

class CpuRopeTest : public ::testing::TestWithParam<RopeCase> {
 protected:
  template <typename T>
  void runContiguous() {
    const RopeCase& c = GetParam();
    at::manual_seed(c.batch * 1000 + c.seq * 100 + c.head_dim);
    const at::TensorOptions options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    checkRope<T>(at::randn({c.batch, c.seq, c.heads, c.head_dim}, options), c.start_pos);
  }

  /// x as the middle third of a fused [B, T, 3 * H * hd] projection, then permuted
  /// to [B, T, H, hd] from a [B, H, T, hd]-ordered buffer: no stride is the contiguous one.
  template <typename T>
  void runStrided() {
    const RopeCase& c = GetParam();
    at::manual_seed(c.batch * 1000 + c.seq * 100 + c.head_dim + 1);
    const at::TensorOptions options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
    const at::Tensor fused = at::randn({c.batch, c.heads, c.seq, 3 * c.head_dim}, options);
    const at::Tensor x = fused.narrow(3, c.head_dim, c.head_dim).permute({0, 2, 1, 3});
    ASSERT_EQ(x.stride(3), 1);
    checkRope<T>(x, c.start_pos);
  }
};

TEST_P(CpuRopeTest, FloatMatchesReference) {
  runContiguous<float>();
}

TEST_P(CpuRopeTest, DoubleMatchesReference) {
  runContiguous<double>();
}

TEST_P(CpuRopeTest, StridedFloatMatchesReference) {
  runStrided<float>();
}

TEST_P(CpuRopeTest, StridedDoubleMatchesReference) {
  runStrided<double>();
}

// head_dim 2 (one pair), below, at and off the vector widths (8 floats, 4 doubles),
// the tiny model's 32, a long 130; zero-sized dims; positions past the first.
INSTANTIATE_TEST_SUITE_P(Shapes, CpuRopeTest,
                         ::testing::Values(RopeCase{1, 1, 1, 2, 0}, RopeCase{2, 3, 1, 6, 5}, RopeCase{1, 5, 3, 34, 0},
                                           RopeCase{3, 7, 2, 8, 2}, RopeCase{2, 4, 5, 130, 17},
                                           RopeCase{2, 16, 4, 32, 0}, RopeCase{0, 3, 2, 4, 0},
                                           RopeCase{2, 0, 2, 4, 1}),
                         caseName);

TEST(CpuRopeTest, ForwardThenBackwardIsTheIdentity) {
  at::manual_seed(9);
  const at::Tensor x = at::randn({2, 6, 3, 18}, at::kDouble);
  const Tables tables(6, 18, at::kDouble);
  at::Tensor y = at::empty_like(x);
  at::Tensor back = at::empty_like(x);
  ropeForward<double>(x.data_ptr<double>(), layoutOf(x), tables.cos.data_ptr<double>(), tables.sin.data_ptr<double>(),
                      y.data_ptr<double>());
  ropeBackward<double>(y.data_ptr<double>(), layoutOf(y), tables.cos.data_ptr<double>(),
                       tables.sin.data_ptr<double>(), back.data_ptr<double>());
  // A rotation's transpose is its inverse: R^T R x = x up to rounding of c^2 + s^2 = 1.
  EXPECT_TRUE(allClose(back, x, 0, 1e-14 * x.abs().max().item<double>()));
}

TEST(CpuRopeTest, ResultsAreBitwiseIndependentOfThreadCount) {
  const test::ThreadCountGuard guard;
  at::manual_seed(10);
  // The tiny model's query shape, twice the batch: several parallel tasks.
  const at::Tensor x = at::randn({32, 128, 4, 32});
  const Tables tables(128, 32, at::kFloat);
  auto run = [&](int threads, bool inverse) {
    at::set_num_threads(threads);
    at::Tensor out = at::empty_like(x);
    (inverse ? ropeBackward<float> : ropeForward<float>)(x.data_ptr<float>(), layoutOf(x), tables.cos.data_ptr<float>(),
                                                         tables.sin.data_ptr<float>(), out.data_ptr<float>());
    return out;
  };
  for (bool inverse : {false, true}) {
    const at::Tensor one = run(1, inverse);
    const at::Tensor two = run(2, inverse);
    ASSERT_EQ(at::get_num_threads(), 2);
    EXPECT_TRUE(at::equal(one, two)) << (inverse ? "backward" : "forward");
  }
}

}  // namespace
}  // namespace loom::kernels::cpu
