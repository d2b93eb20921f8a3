#include "model/mlp.h"

#include "kernels/torch/swiglu_ops.h"

#include <ATen/ATen.h>

namespace loom::model {

MlpImpl::MlpImpl(const ModelOptions& opts) {
  auto linear = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  w1 = register_module("w1", linear(opts.dim, opts.ffn_dim));
  w2 = register_module("w2", linear(opts.ffn_dim, opts.dim));
  w3 = register_module("w3", linear(opts.dim, opts.ffn_dim));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  return w2->forward(kernels::swiglu(w1->forward(x), w3->forward(x)));
}

}  // namespace loom::model
