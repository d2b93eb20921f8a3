#include "kernels/torch/rope_ops.h"

#include "kernels/torch/op_checks.h"
#include "kernels/torch/rope_launch.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace loom::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kOp = "loom::rope";

void checkInputs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start_pos) {
  detail::checkDefinedDense(kOp, "x", x);
  detail::checkDefinedDense(kOp, "cos", cos);
  detail::checkDefinedDense(kOp, "sin", sin);
  TORCH_CHECK(x.dim() == 4, kOp, ": x must be 4-D [batch, seq, heads, head_dim], got shape ", x.sizes());
  const int64_t head_dim = x.size(3);
  TORCH_CHECK(head_dim > 0 && head_dim % 2 == 0, kOp, ": head_dim (x's last dim) must be even and > 0, got ",
              head_dim);
  TORCH_CHECK(cos.dim() == 2, kOp, ": cos must be 2-D [max_seq_len, head_dim / 2], got shape ", cos.sizes());
  TORCH_CHECK(sin.sizes() == cos.sizes(), kOp, ": sin has shape ", sin.sizes(), " but cos has shape ", cos.sizes());
  TORCH_CHECK(cos.size(1) == head_dim / 2, kOp, ": cos and sin have ", cos.size(1), " columns but head_dim / 2 is ",
              head_dim / 2, " (x has shape ", x.sizes(), ")");
  TORCH_CHECK(start_pos >= 0, kOp, ": start_pos must be >= 0, got ", start_pos);
  TORCH_CHECK(start_pos + x.size(1) <= cos.size(0), kOp, ": positions [", start_pos, ", ", start_pos + x.size(1),
              ") exceed the tables' ", cos.size(0), " rows (max_seq_len); build longer tables or shorten the input");
  TORCH_CHECK(cos.device() == x.device() && sin.device() == x.device(), kOp, ": cos is on ", cos.device(),
              " and sin on ", sin.device(), " but x is on ", x.device(), "; move all three to one device");
  TORCH_CHECK(sin.scalar_type() == cos.scalar_type(), kOp, ": sin has dtype ", sin.scalar_type(), " but cos has ",
              cos.scalar_type());
  TORCH_CHECK(cos.scalar_type() == x.scalar_type() || cos.scalar_type() == at::kFloat, kOp, ": cos and sin have dtype ",
              cos.scalar_type(), "; they must be float32 or x's dtype (", x.scalar_type(), ")");
  TORCH_CHECK(!cos.requires_grad() && !sin.requires_grad(), kOp,
              ": cos and sin must not require grad (the op differentiates x only); pass detached tables");
  detail::checkHasKernel(kOp, x);
}

/// The kernels read a strided tensor in place if its last dim is contiguous.
at::Tensor withContiguousLastDim(const at::Tensor& t) {
  return t.stride(3) == 1 ? t : t.contiguous();
}

class RopeFunction : public torch::autograd::Function<RopeFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            int64_t start_pos) {
    const int64_t seq = x.size(1);
    // The rows for x's positions, in x's dtype (a view, unless the dtype differs).
    const at::Tensor cos_rows = cos.narrow(0, start_pos, seq).to(x.scalar_type()).contiguous();
    const at::Tensor sin_rows = sin.narrow(0, start_pos, seq).to(x.scalar_type()).contiguous();
    ctx->save_for_backward({cos_rows, sin_rows});
    return detail::runRope(withContiguousLastDim(x), cos_rows, sin_rows, /*inverse=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    detail::checkFirstOrder(kOp);
    const variable_list saved = ctx->get_saved_variables();
    at::Tensor dx = detail::runRope(withContiguousLastDim(grads[0]), saved[0], saved[1], /*inverse=*/true);
    return {dx, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start_pos) {
  checkInputs(x, cos, sin, start_pos);
  return RopeFunction::apply(x, cos, sin, start_pos);
}

}  // namespace loom::kernels
