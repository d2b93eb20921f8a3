// SwiGLU feed-forward: w2(silu(w1 x) * w3 x).
// Names: mlp.w1.weight [f, d] (gate), mlp.w3.weight [f, d] (up), mlp.w2.weight [d, f] (down).
#pragma once

#include "runtime/config/options.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace loom::model {

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelOptions& opts);

  /// x: [..., dim] (already normalised) -> [..., dim].
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace loom::model
