#include "kernels/torch/rms_norm_ops.h"

#include "kernels/torch/rms_norm_launch.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

namespace loom::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kRmsNorm = "loom::rms_norm";
constexpr const char* kFusedAddRmsNorm = "loom::fused_add_rms_norm";
constexpr const char* kRmsNormBackward = "loom::rms_norm_backward";

void checkInputs(const char* op, const at::Tensor& x, const at::Tensor* residual, const at::Tensor& weight,
                 double eps) {
  TORCH_CHECK(x.defined() && weight.defined(), op, ": x and weight must be defined tensors");
  TORCH_CHECK(x.dim() >= 1, op, ": x must have at least one dim (the normalised one), got a ", "0-dim tensor");
  TORCH_CHECK(weight.dim() == 1, op, ": weight must be 1-D, got shape ", weight.sizes());
  TORCH_CHECK(weight.numel() == x.size(-1), op, ": weight has ", weight.numel(), " elements but x's last dim is ",
              x.size(-1));
  TORCH_CHECK(x.size(-1) > 0, op, ": x's last dim is 0; RMSNorm needs at least one element ", "per row");
  TORCH_CHECK(x.layout() == at::kStrided && weight.layout() == at::kStrided, op,
              ": x and weight must be dense (strided) tensors");
  TORCH_CHECK(weight.device() == x.device(), op, ": weight is on ", weight.device(), " but x is on ", x.device(),
              "; move both to one device");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), op, ": weight has dtype ", weight.scalar_type(), " but x has ",
              x.scalar_type(), "; cast both to one dtype");
  if (residual != nullptr) {
    TORCH_CHECK(residual->defined(), op, ": residual must be a defined tensor");
    TORCH_CHECK(residual->sizes() == x.sizes(), op, ": residual has shape ", residual->sizes(), " but x has shape ",
                x.sizes());
    TORCH_CHECK(residual->layout() == at::kStrided, op, ": residual must be a dense tensor");
    TORCH_CHECK(residual->device() == x.device(), op, ": residual is on ", residual->device(), " but x is on ",
                x.device(), "; move both to one device");
    TORCH_CHECK(residual->scalar_type() == x.scalar_type(), op, ": residual has dtype ", residual->scalar_type(),
                " but x has ", x.scalar_type(), "; cast both to one dtype");
  }
  TORCH_CHECK(detail::hasKernel(x.device(), x.scalar_type()), op, ": no kernel for dtype ", x.scalar_type(), " on ",
              x.device(), "; supported: ", detail::supportedKernels());
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
}

/// The kernels' gradients carry no autograd history, so a second derivative through
/// them would silently be zero: refuse instead.
void checkFirstOrder(const char* op) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op,
              ": double backward is not supported (backward ran with create_graph=True); "
              "differentiate a plain-libtorch RMSNorm instead");
}

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    at::Tensor xc = x.contiguous();
    at::Tensor wc = weight.contiguous();
    detail::RmsNormForwardOutputs out = detail::runRmsNormForward(xc, at::Tensor(), wc, eps);
    ctx->save_for_backward({xc, wc, out.rstd});
    return out.y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    checkFirstOrder(kRmsNorm);
    const variable_list saved = ctx->get_saved_variables();
    detail::RmsNormGradients g = detail::runRmsNormBackward(grads[0].contiguous(), at::Tensor(), saved[0], saved[1],
                                                            saved[2], ctx->needs_input_grad(1));
    return {g.dx, g.dweight, at::Tensor()};
  }
};

class FusedAddRmsNormFunction : public torch::autograd::Function<FusedAddRmsNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& residual,
                               const at::Tensor& weight, double eps) {
    at::Tensor wc = weight.contiguous();
    detail::RmsNormForwardOutputs out = detail::runRmsNormForward(x.contiguous(), residual.contiguous(), wc, eps);
    ctx->save_for_backward({out.residual_out, wc, out.rstd});
    // An unused output gets an undefined gradient rather than a tensor of zeros.
    ctx->set_materialize_grads(false);
    return {out.y, out.residual_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    checkFirstOrder(kFusedAddRmsNorm);
    const at::Tensor& dy = grads[0];
    const at::Tensor& dresidual_out = grads[1];
    if (!dy.defined()) {
      // Only residual_out was used: the norm contributes nothing.
      return {dresidual_out, dresidual_out, at::Tensor(), at::Tensor()};
    }
    const variable_list saved = ctx->get_saved_variables();
    detail::RmsNormGradients g =
        detail::runRmsNormBackward(dy.contiguous(), dresidual_out.defined() ? dresidual_out.contiguous() : at::Tensor(),
                                   saved[0], saved[1], saved[2], ctx->needs_input_grad(2));
    return {g.dx, g.dx, g.dweight, at::Tensor()};
  }
};

}  // namespace

at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  checkInputs(kRmsNorm, x, nullptr, weight, eps);
  return RmsNormFunction::apply(x, weight, eps);
}

std::tuple<at::Tensor, at::Tensor> fusedAddRmsNorm(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& weight, double eps) {
  checkInputs(kFusedAddRmsNorm, x, &residual, weight, eps);
  variable_list outputs = FusedAddRmsNormFunction::apply(x, residual, weight, eps);
  return {outputs[0], outputs[1]};
}

std::tuple<at::Tensor, at::Tensor> rmsNormBackward(const at::Tensor& dy, const at::Tensor& dresidual,
                                                   const at::Tensor& x, const at::Tensor& weight, double eps) {
  checkInputs(kRmsNormBackward, x, nullptr, weight, eps);
  const auto matches_x = [&](const at::Tensor& g) {
    return g.sizes() == x.sizes() && g.scalar_type() == x.scalar_type() && g.device() == x.device();
  };
  TORCH_CHECK(dy.defined() && matches_x(dy) && (!dresidual.defined() || matches_x(dresidual)), kRmsNormBackward,
              ": dy and dresidual must match x (", x.sizes(), ", ", x.scalar_type(), ", ", x.device(), ")");
  const at::NoGradGuard no_grad;
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  const at::Tensor rstd = detail::runRmsNormForward(xc, at::Tensor(), wc, eps).rstd;
  detail::RmsNormGradients g = detail::runRmsNormBackward(
      dy.contiguous(), dresidual.defined() ? dresidual.contiguous() : at::Tensor(), xc, wc, rstd, true);
  return {g.dx, g.dweight};
}

}  // namespace loom::kernels
