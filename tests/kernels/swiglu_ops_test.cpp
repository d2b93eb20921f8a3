// loom::kernels::swiglu (kernels/torch/swiglu_ops.h) and torch.ops.loom.swiglu through
// the dispatcher: values and both gradients against autograd through model/mlp.cpp's
// silu(gate) * up in float64 (tolerances as in swiglu_cpu_test.cpp) for any shape,
// non-contiguous inputs, one input without grad, and the error messages.
#include "kernels/torch/swiglu_ops.h"

#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/op_test_util.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <vector>

namespace loom::kernels {
namespace {

using test::allClose;
using test::expectError;

class SwigluOpsTest : public ::testing::TestWithParam<at::ScalarType> {
 protected:
  at::TensorOptions options() const { return at::TensorOptions().dtype(GetParam()); }
  double rtol() const { return test::rtolFor(GetParam()); }
};

TEST_P(SwigluOpsTest, ValuesAndGradientsMatchReferenceForAnyShape) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {37}, {4, 1, 64}, {2, 3, 5, 37}, {3, 0, 6}};
  for (const auto& shape : shapes) {
    SCOPED_TRACE(c10::str("shape ", c10::IntArrayRef(shape)));
    at::manual_seed(40);
    at::Tensor gate = (3 * at::randn(shape, options())).requires_grad_();
    at::Tensor up = at::randn(shape, options()).requires_grad_();
    const at::Tensor dy = at::randn(shape, options());
    const at::Tensor y = swiglu(gate, up);
    (y * dy).sum().backward();

    at::Tensor gate_ref = test::leafDouble(gate);
    at::Tensor up_ref = test::leafDouble(up);
    (test::referenceSwiglu(gate_ref, up_ref) * dy.to(at::kDouble)).sum().backward();
    EXPECT_EQ(y.scalar_type(), GetParam());
    EXPECT_EQ(y.sizes(), gate.sizes());
    EXPECT_TRUE(allClose(y, test::referenceSwiglu(gate_ref, up_ref), rtol(), 0));
    EXPECT_TRUE(allClose(up.grad(), up_ref.grad(), rtol(), 0));
    EXPECT_TRUE(allClose(gate.grad(), gate_ref.grad(), rtol(), rtol() * test::swigluGateGradScale(gate, up, dy)));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SwigluOpsTest, ::testing::Values(at::kFloat, at::kDouble),
                         [](const ::testing::TestParamInfo<at::ScalarType>& info) {
                           return std::string(c10::toString(info.param));
                         });

TEST(SwigluOpsTest, NonContiguousInputsGiveTheContiguousResult) {
  at::manual_seed(41);
  // gate and up as the two halves of one [rows, 2 * hidden] projection.
  const at::Tensor fused = at::randn({10, 2 * 24}, at::kDouble);
  const at::Tensor gate = fused.narrow(1, 0, 24);
  const at::Tensor up = fused.narrow(1, 24, 24);
  ASSERT_FALSE(gate.is_contiguous());
  EXPECT_TRUE(at::equal(swiglu(gate, up), swiglu(gate.contiguous(), up.contiguous())));
  const at::Tensor gate_t = at::randn({24, 10}, at::kDouble).t();
  const at::Tensor up_t = at::randn({24, 10}, at::kDouble).t();
  EXPECT_TRUE(at::equal(swiglu(gate_t, up_t), swiglu(gate_t.contiguous(), up_t.contiguous())));
}

TEST(SwigluOpsTest, InputWithoutGradGetsNone) {
  at::manual_seed(42);
  at::Tensor gate = at::randn({5, 9}, at::kDouble).requires_grad_();
  const at::Tensor up = at::randn({5, 9}, at::kDouble);
  swiglu(gate, up).sum().backward();
  at::Tensor gate_ref = test::leafDouble(gate);
  test::referenceSwiglu(gate_ref, up).sum().backward();
  EXPECT_FALSE(up.grad().defined());
  EXPECT_TRUE(allClose(gate.grad(), gate_ref.grad(), 1e-12,
                       1e-12 * test::swigluGateGradScale(gate, up, at::ones_like(up))));
}

TEST(SwigluOpsTest, DoubleBackwardIsRefused) {
  at::Tensor gate = at::randn({2, 8}, at::kDouble).requires_grad_();
  const at::Tensor y = swiglu(gate, at::ones({2, 8}, at::kDouble));
  expectError(
      [&] {
        torch::autograd::grad({y.pow(2).sum()}, {gate}, {}, /*retain_graph=*/true, /*create_graph=*/true);
      },
      "loom::swiglu: double backward is not supported");
}

TEST(SwigluOpsTest, BadInputsNameTheProblem) {
  const at::Tensor gate = at::randn({4, 6});
  expectError([&] { swiglu(gate, at::randn({4, 5})); }, "loom::swiglu: up has shape [4, 5] but gate has shape [4, 6]");
  expectError([&] { swiglu(gate, at::randn({4, 6}, at::kDouble)); },
              "loom::swiglu: up has dtype Double but gate has Float; cast both to one dtype");
  expectError([&] { swiglu(gate.to(at::kInt), gate.to(at::kInt)); }, "loom::swiglu: no kernel for dtype Int on cpu");
  expectError([&] { swiglu(at::Tensor(), gate); }, "loom::swiglu: gate must be a defined tensor");
}

TEST(SwigluOpsTest, DispatcherCallEqualsDirectCall) {
  const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("loom::swiglu", "");
  at::manual_seed(43);
  at::Tensor gate = at::randn({6, 40}).requires_grad_();
  at::Tensor up = at::randn({6, 40}).requires_grad_();
  const at::Tensor dy = at::randn({6, 40});
  const at::Tensor y = op.typed<at::Tensor(const at::Tensor&, const at::Tensor&)>().call(gate, up);
  (y * dy).sum().backward();
  const at::Tensor dgate = gate.grad().clone();
  const at::Tensor dup = up.grad().clone();
  gate.mutable_grad().reset();
  up.mutable_grad().reset();
  const at::Tensor y_direct = swiglu(gate, up);
  (y_direct * dy).sum().backward();
  EXPECT_TRUE(at::equal(y, y_direct));
  EXPECT_TRUE(at::equal(dgate, gate.grad()));
  EXPECT_TRUE(at::equal(dup, up.grad()));
}

}  // namespace
}  // namespace loom::kernels
