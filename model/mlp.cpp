#include "model/mlp.h"

#include "kernels/torch/swiglu_ops.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

namespace loom::model {

MlpImpl::MlpImpl(const ModelOptions& opts, int64_t tp) {
  LOOM_CHECK_INPUT(tp >= 1 && opts.ffn_dim % tp == 0, "mlp: ffn_dim (", opts.ffn_dim,
                   ") must be a multiple of the tensor-parallel size ", tp);
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  const int64_t ffn = opts.ffn_dim / tp;
  w1 = register_module("w1", linear(opts.dim, ffn));
  w2 = register_module("w2", linear(ffn, opts.dim));
  w3 = register_module("w3", linear(opts.dim, ffn));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  return w2->forward(kernels::swiglu(w1->forward(x), w3->forward(x)));
}

}  // namespace loom::model
