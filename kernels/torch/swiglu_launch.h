// Internal to kernels/torch: runs the SwiGLU kernels of a tensor's device on tensors
// that swiglu_ops.cpp has already validated. Not part of the public API.
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::kernels::detail {

/// silu(gate) * up, shaped like gate. REQUIRES: gate and up contiguous, one shape,
/// dtype and device, with a kernel there (hasKernel).
at::Tensor runSwigluForward(const at::Tensor& gate, const at::Tensor& up);

struct SwigluGradients {
  at::Tensor dgate;  ///< undefined unless requested
  at::Tensor dup;    ///< undefined unless requested
};

/// REQUIRES: as above, and dy contiguous and shaped like gate.
SwigluGradients runSwigluBackward(const at::Tensor& dy, const at::Tensor& gate, const at::Tensor& up,
                                  bool need_dgate, bool need_dup);

}  // namespace loom::kernels::detail
