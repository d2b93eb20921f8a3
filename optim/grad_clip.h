// Clipping by global gradient norm (torch.nn.utils.clip_grad_norm_ semantics).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace loom::optim {

/// L2 norm over the gradients of all `params` (accumulated in double).
/// Parameters without a gradient contribute nothing.
double globalGradNorm(const std::vector<at::Tensor>& params);

/// Scales every gradient by max_norm / (norm + 1e-6) when that is below 1 and
/// returns the norm before clipping. max_norm <= 0 only measures.
double clipGradNorm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace loom::optim
