#include "kernels/torch/swiglu_ops.h"

#include "kernels/torch/op_checks.h"
#include "kernels/torch/swiglu_launch.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

namespace loom::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kOp = "loom::swiglu";

void checkInputs(const at::Tensor& gate, const at::Tensor& up) {
  detail::checkDefinedDense(kOp, "gate", gate);
  detail::checkDefinedDense(kOp, "up", up);
  TORCH_CHECK(up.sizes() == gate.sizes(), kOp, ": up has shape ", up.sizes(), " but gate has shape ", gate.sizes());
  detail::checkSameDtypeAndDevice(kOp, "up", up, "gate", gate);
  detail::checkHasKernel(kOp, gate);
}

class SwigluFunction : public torch::autograd::Function<SwigluFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    const at::Tensor gate_c = gate.contiguous();
    const at::Tensor up_c = up.contiguous();
    ctx->save_for_backward({gate_c, up_c});
    return detail::runSwigluForward(gate_c, up_c);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    detail::checkFirstOrder(kOp);
    const variable_list saved = ctx->get_saved_variables();
    detail::SwigluGradients g = detail::runSwigluBackward(grads[0].contiguous(), saved[0], saved[1],
                                                          ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    return {g.dgate, g.dup};
  }
};

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  checkInputs(gate, up);
  return SwigluFunction::apply(gate, up);
}

}  // namespace loom::kernels
