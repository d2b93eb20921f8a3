#include "kernels/torch/causal_softmax_ops.h"

#include "kernels/torch/causal_softmax_launch.h"
#include "kernels/torch/op_checks.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

namespace loom::kernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr const char* kOp = "loom::causal_softmax";

void checkInputs(const at::Tensor& scores, double scale) {
  detail::checkDefinedDense(kOp, "scores", scores);
  TORCH_CHECK(scores.dim() >= 2, kOp, ": scores must have at least 2 dims [..., q_len, k_len], got shape ",
              scores.sizes());
  TORCH_CHECK(scores.size(-2) <= scores.size(-1), kOp, ": scores has q_len ", scores.size(-2), " > k_len ",
              scores.size(-1), " (shape ", scores.sizes(),
              "); the queries are the last q_len of the k_len positions, so q_len <= k_len");
  TORCH_CHECK(std::isfinite(scale), kOp, ": scale must be finite, got ", scale);
  detail::checkHasKernel(kOp, scores);
}

class CausalSoftmaxFunction : public torch::autograd::Function<CausalSoftmaxFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& scores, double scale) {
    at::Tensor probs = detail::runCausalSoftmaxForward(scores.contiguous(), scale);
    ctx->save_for_backward({probs});
    ctx->saved_data["scale"] = scale;
    return probs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    detail::checkFirstOrder(kOp);
    const variable_list saved = ctx->get_saved_variables();
    const double scale = ctx->saved_data["scale"].toDouble();
    return {detail::runCausalSoftmaxBackward(grads[0].contiguous(), saved[0], scale), at::Tensor()};
  }
};

}  // namespace

at::Tensor causalSoftmax(const at::Tensor& scores, double scale) {
  checkInputs(scores, scale);
  return CausalSoftmaxFunction::apply(scores, scale);
}

}  // namespace loom::kernels
