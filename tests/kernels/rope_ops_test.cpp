// loom::kernels::rope (kernels/torch/rope_ops.h) and torch.ops.loom.rope through the
// dispatcher: values and x-gradients against autograd through model/rope.cpp's
// composite in float64 (tolerances as in rope_cpu_test.cpp), strided views read in
// place, float32 tables with float64 x, and the error messages.
#include "kernels/torch/rope_ops.h"

#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/op_test_util.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <string>

namespace loom::kernels {
namespace {

using test::allClose;
using test::expectError;

/// model/rope.cpp's tables: angles computed in double, stored as float32.
struct Tables {
  Tables(int64_t positions, int64_t head_dim) {
    const at::Tensor inv_freq =
        at::pow(10000.0, at::arange(0, head_dim / 2, at::kDouble) * (-2.0 / static_cast<double>(head_dim)));
    const at::Tensor angles = at::outer(at::arange(positions, at::kDouble), inv_freq);
    cos = angles.cos().to(at::kFloat);
    sin = angles.sin().to(at::kFloat);
  }
  at::Tensor cos, sin;
};

double maxAbs(const at::Tensor& t) {
  return t.numel() == 0 ? 0 : t.abs().max().item<double>();
}

class RopeOpsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  at::TensorOptions options() const { return at::TensorOptions().dtype(GetParam()); }
  double rtol() const { return test::rtolFor(GetParam()); }
};

TEST_P(RopeOpsTest, ValuesAndGradientsMatchReference) {
  const Tables tables(64, 34);
  for (int64_t start_pos : {0, 7}) {
    SCOPED_TRACE(c10::str("start_pos ", start_pos));
    at::manual_seed(20 + start_pos);
    at::Tensor x = at::randn({3, 9, 2, 34}, options()).requires_grad_();
    const at::Tensor dy = at::randn({3, 9, 2, 34}, options());
    const at::Tensor y = rope(x, tables.cos, tables.sin, start_pos);
    (y * dy).sum().backward();
    at::Tensor x_ref = test::leafDouble(x);
    const at::Tensor y_ref = test::referenceRope(x_ref, tables.cos, tables.sin, start_pos);
    (y_ref * dy.to(at::kDouble)).sum().backward();
    EXPECT_EQ(y.scalar_type(), GetParam());
    EXPECT_TRUE(y.is_contiguous());
    EXPECT_TRUE(allClose(y, y_ref, rtol(), rtol() * maxAbs(x)));
    EXPECT_TRUE(allClose(x.grad(), x_ref.grad(), rtol(), rtol() * maxAbs(dy)));
  }
}

TEST_P(RopeOpsTest, TablesInXsDtypeGiveTheFloat32TablesResult) {
  const Tables tables(16, 8);
  at::manual_seed(21);
  const at::Tensor x = at::randn({2, 5, 3, 8}, options());
  EXPECT_TRUE(at::equal(rope(x, tables.cos, tables.sin, 3),
                        rope(x, tables.cos.to(GetParam()), tables.sin.to(GetParam()), 3)));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, RopeOpsTest, ::testing::Values(at::kFloat, at::kDouble),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(RopeOpsTest, StridedViewsGiveTheContiguousResultAndGradient) {
  const Tables tables(12, 16);
  at::manual_seed(22);
  // q as a view of a fused qkv projection [B, T, 3 * H * hd], as a model would pass it.
  at::Tensor qkv = at::randn({2, 12, 3 * 4 * 16}, at::kDouble).requires_grad_();
  const at::Tensor q = qkv.view({2, 12, 3, 4, 16}).select(2, 1);
  ASSERT_FALSE(q.is_contiguous());
  const at::Tensor dy = at::randn({2, 12, 4, 16}, at::kDouble);
  const at::Tensor y = rope(q, tables.cos, tables.sin, 0);
  EXPECT_TRUE(at::equal(y, rope(q.contiguous(), tables.cos, tables.sin, 0)));
  (y * dy).sum().backward();
  at::Tensor qkv_ref = test::leafDouble(qkv);
  const at::Tensor q_ref = qkv_ref.view({2, 12, 3, 4, 16}).select(2, 1);
  (test::referenceRope(q_ref, tables.cos, tables.sin, 0) * dy).sum().backward();
  EXPECT_TRUE(allClose(qkv.grad(), qkv_ref.grad(), 1e-12, 1e-12 * maxAbs(dy)));

  // A last dim that is not contiguous is copied first: same values.
  const at::Tensor transposed = at::randn({2, 16, 4, 12}, at::kDouble).transpose(1, 3);
  ASSERT_NE(transposed.stride(3), 1);
  EXPECT_TRUE(at::equal(rope(transposed, tables.cos, tables.sin, 0),
                        rope(transposed.contiguous(), tables.cos, tables.sin, 0)));
}

TEST(RopeOpsTest, ExpandedUpstreamGradientIsHandled) {
  // sum().backward() hands the op a gradient with all strides 0.
  const Tables tables(4, 4);
  at::Tensor x = at::randn({1, 4, 2, 4}, at::kDouble).requires_grad_();
  rope(x, tables.cos, tables.sin, 0).sum().backward();
  at::Tensor x_ref = test::leafDouble(x);
  test::referenceRope(x_ref, tables.cos, tables.sin, 0).sum().backward();
  EXPECT_TRUE(allClose(x.grad(), x_ref.grad(), 1e-12, 1e-12));
}

TEST(RopeOpsTest, DoubleBackwardIsRefused) {
  const Tables tables(4, 4);
  at::Tensor x = at::randn({1, 4, 2, 4}, at::kDouble).requires_grad_();
  const at::Tensor y = rope(x, tables.cos, tables.sin, 0);
  expectError(
      [&] {
        torch::autograd::grad({y.pow(2).sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true);
      },
      "loom::rope: double backward is not supported");
}

TEST(RopeOpsTest, BadInputsNameTheProblem) {
  const Tables tables(16, 8);
  const at::Tensor x = at::randn({2, 5, 3, 8});
  const at::Tensor& c = tables.cos;
  const at::Tensor& s = tables.sin;
  expectError([&] { rope(at::randn({5, 3, 8}), c, s, 0); },
              "loom::rope: x must be 4-D [batch, seq, heads, head_dim], got shape [5, 3, 8]");
  expectError([&] { rope(at::randn({2, 5, 3, 7}), c, s, 0); },
              "loom::rope: head_dim (x's last dim) must be even and > 0, got 7");
  expectError([&] { rope(x, c.flatten(), s.flatten(), 0); }, "loom::rope: cos must be 2-D");
  expectError([&] { rope(x, c, s.narrow(0, 0, 8), 0); }, "loom::rope: sin has shape [8, 4] but cos has shape [16, 4]");
  expectError([&] { rope(x, c.narrow(1, 0, 2), s.narrow(1, 0, 2), 0); },
              "loom::rope: cos and sin have 2 columns but head_dim / 2 is 4");
  expectError([&] { rope(x, c, s, -1); }, "loom::rope: start_pos must be >= 0, got -1");
  expectError([&] { rope(x, c, s, 12); }, "loom::rope: positions [12, 17) exceed the tables' 16 rows");
  expectError([&] { rope(x, c.to(at::kHalf), s.to(at::kHalf), 0); },
              "loom::rope: cos and sin have dtype Half; they must be float32 or x's dtype (Float)");
  expectError([&] { rope(x, c, s.to(at::kDouble), 0); }, "loom::rope: sin has dtype Double but cos has Float");
  expectError([&] { rope(x, c.clone().requires_grad_(), s, 0); }, "loom::rope: cos and sin must not require grad");
  expectError([&] { rope(x.to(at::kInt), c, s, 0); }, "loom::rope: no kernel for dtype Int on cpu");
}

TEST(RopeOpsTest, DispatcherCallEqualsDirectCallAndDefaultsStartPosTo0) {
  const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("loom::rope", "");
  const c10::Argument& start_pos = op.schema().arguments().back();
  EXPECT_EQ(start_pos.name(), "start_pos");
  ASSERT_TRUE(start_pos.default_value().has_value());
  EXPECT_EQ(start_pos.default_value()->toInt(), 0);

  const Tables tables(8, 6);
  at::manual_seed(23);
  at::Tensor x = at::randn({2, 3, 2, 6}).requires_grad_();
  const at::Tensor dy = at::randn({2, 3, 2, 6});
  const at::Tensor y = op.typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>().call(
      x, tables.cos, tables.sin, 2);
  (y * dy).sum().backward();
  const at::Tensor dx = x.grad().clone();
  x.mutable_grad().reset();
  const at::Tensor y_direct = rope(x, tables.cos, tables.sin, 2);
  (y_direct * dy).sum().backward();
  EXPECT_TRUE(at::equal(y, y_direct));
  EXPECT_TRUE(at::equal(dx, x.grad()));
}

}  // namespace
}  // namespace loom::kernels
