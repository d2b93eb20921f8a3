// SwiGLU feed-forward: w2(silu(w1 x) * w3 x).
// Names: mlp.w1.weight [f, d] (gate), mlp.w3.weight [f, d] (up), mlp.w2.weight [d, f] (down).
#pragma once

#include "runtime/config/options.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

namespace loom::model {

class MlpImpl : public torch::nn::Module {
 public:
  /// With tensor parallelism over `tp` ranks, this rank's ffn_dim/tp columns
  /// (w1, w3 split by rows, w2 by columns); forward() then returns a partial sum.
  explicit MlpImpl(const ModelOptions& opts, int64_t tp = 1);

  /// x: [..., dim] (already normalised) -> [..., dim].
  at::Tensor forward(const at::Tensor& x);

  torch::nn::Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
};
TORCH_MODULE(Mlp);

}  // namespace loom::model
