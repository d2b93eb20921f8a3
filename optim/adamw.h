// AdamW with decoupled weight decay, the inner optimizer of every loom job.
//
// The update is PyTorch's torch.optim.AdamW (so results compare with it to
// float rounding): for each parameter p with gradient g, at step t (1-based):
//   p   <- p * (1 - lr * wd)                       (wd = 0 for non-matrices)
//   m   <- beta1 * m + (1 - beta1) * g
//   v   <- beta2 * v + (1 - beta2) * g^2
//   p   <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Weight decay applies to matrices only (dim >= 2: embeddings and linear
// weights), never to norm gains. One fused pass over each tensor.
#pragma once

#include "runtime/config/options.h"
#include "runtime/core/named_tensors.h"

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace loom::optim {

using loom::NamedTensors;

class AdamW {
 public:
  /// REQUIRES: parameters are contiguous float32 CPU tensors that outlive the optimizer.
  AdamW(NamedTensors parameters, const OptimizerOptions& opts);

  /// Applies one update with learning rate `lr` from each parameter's .grad()
  /// (a parameter without a gradient is left untouched, its moments too).
  void step(double lr);

  int64_t stepCount() const { return step_; }

  /// The moments, named "exp_avg.<param>" / "exp_avg_sq.<param>", for checkpoints.
  NamedTensors stateTensors() const;
  /// Restores what stateTensors() returned (names and shapes must match) and the step count.
  void loadState(const NamedTensors& state, int64_t step_count);

  /// Bytes held by the optimizer state (moments), for memory reports.
  int64_t stateBytes() const;

 private:
  struct Slot {
    std::string name;
    at::Tensor param;
    at::Tensor exp_avg;
    at::Tensor exp_avg_sq;
    bool decay;
  };

  std::vector<Slot> slots_;
  OptimizerOptions opts_;
  int64_t step_ = 0;
};

}  // namespace loom::optim
