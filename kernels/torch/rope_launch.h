// Internal to kernels/torch: runs the RoPE kernel of a tensor's device on tensors
// that rope_ops.cpp has already validated. Not part of the public API.
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::kernels::detail {

/// Rotates x by the tables' angles, or by their negatives when `inverse` (the
/// backward), into a new contiguous tensor of x's shape.
/// REQUIRES: x 4-D [batch, seq, heads, head_dim], head_dim even and > 0,
/// x.stride(3) == 1; cos and sin contiguous [seq, head_dim / 2]; all on one device,
/// one dtype with a kernel there (hasKernel).
at::Tensor runRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse);

}  // namespace loom::kernels::detail
