// The ops as registered by libloom_torch.so (kernels/torch/register.cpp), called
// through the c10 dispatcher as torch.ops.loom.* does: same values and gradients as
// the direct C++ calls, and the schema's default eps.
#include "kernels/torch/rms_norm_ops.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>

#include <tuple>

namespace loom::kernels {
namespace {

using RmsNormSignature = at::Tensor(const at::Tensor&, const at::Tensor&, double);
using FusedSignature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                          double);

TEST(RmsNormDispatcherTest, RmsNormThroughDispatcherEqualsDirectCall) {
  const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("loom::rms_norm", "");
  at::manual_seed(21);
  at::Tensor x = at::randn({3, 4, 40}).requires_grad_();
  at::Tensor w = at::randn({40}).requires_grad_();
  const at::Tensor dy = at::randn({3, 4, 40});

  at::Tensor y = op.typed<RmsNormSignature>().call(x, w, 1e-5);
  (y * dy).sum().backward();
  const at::Tensor dx = x.grad().clone();
  const at::Tensor dw = w.grad().clone();
  x.mutable_grad().reset();
  w.mutable_grad().reset();

  at::Tensor y_direct = rmsNorm(x, w, 1e-5);
  (y_direct * dy).sum().backward();
  EXPECT_TRUE(at::equal(y, y_direct));
  EXPECT_TRUE(at::equal(dx, x.grad()));
  EXPECT_TRUE(at::equal(dw, w.grad()));
}

TEST(RmsNormDispatcherTest, FusedThroughDispatcherEqualsDirectCall) {
  const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("loom::fused_add_rms_norm", "");
  at::manual_seed(22);
  at::Tensor x = at::randn({6, 24}, at::kDouble).requires_grad_();
  at::Tensor r = at::randn({6, 24}, at::kDouble).requires_grad_();
  at::Tensor w = at::randn({24}, at::kDouble).requires_grad_();
  const at::Tensor dy = at::randn({6, 24}, at::kDouble);
  const at::Tensor dres = at::randn({6, 24}, at::kDouble);

  auto [out, residual_out] = op.typed<FusedSignature>().call(x, r, w, 1e-5);
  ((out * dy).sum() + (residual_out * dres).sum()).backward();
  const at::Tensor dx = x.grad().clone();
  const at::Tensor dr = r.grad().clone();
  const at::Tensor dw = w.grad().clone();
  x.mutable_grad().reset();
  r.mutable_grad().reset();
  w.mutable_grad().reset();

  auto [out_direct, residual_out_direct] = fusedAddRmsNorm(x, r, w, 1e-5);
  ((out_direct * dy).sum() + (residual_out_direct * dres).sum()).backward();
  EXPECT_TRUE(at::equal(out, out_direct));
  EXPECT_TRUE(at::equal(residual_out, residual_out_direct));
  EXPECT_TRUE(at::equal(dx, x.grad()));
  EXPECT_TRUE(at::equal(dr, r.grad()));
  EXPECT_TRUE(at::equal(dw, w.grad()));
}

TEST(RmsNormDispatcherTest, SchemasDefaultEpsTo1e5) {
  for (const char* name : {"loom::rms_norm", "loom::fused_add_rms_norm"}) {
    const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
    const c10::FunctionSchema& schema = op.schema();
    const c10::Argument& eps = schema.arguments().back();
    EXPECT_EQ(eps.name(), "eps") << name;
    ASSERT_TRUE(eps.default_value().has_value()) << name;
    EXPECT_DOUBLE_EQ(eps.default_value()->toDouble(), 1e-5) << name;
  }
}

}  // namespace
}  // namespace loom::kernels
