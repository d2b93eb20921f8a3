// Rotary position embedding as a differentiable libtorch op: what the model calls
// instead of RotaryEmbedding::apply's unflatten/select/stack chain, and what
// libloom_torch.so registers as torch.ops.loom.rope.
//
// Formula and vectorisation: kernels/cpu/rope.h and docs/kernels.md. CPU tensors run
// kernels/cpu (float32, float64); CUDA tensors run kernels/cuda (float32) on the
// current CUDA stream when loom was built with LOOM_WITH_CUDA against a CUDA libtorch.
//
// x is read in place when its last dim is contiguous, whatever its other strides (a
// view of a projection output costs no copy); otherwise it is copied first. The
// tables may be float32 for a float64 x: the rows used are then converted.
// Gradients flow to x only (first order: a backward run with create_graph=True
// throws).
//
// Errors (c10::Error, RuntimeError in Python), each message prefixed with
// "loom::rope": x not 4-D, head_dim odd or 0; cos/sin not 2-D, not one shape, with
// a column count != head_dim / 2, or requiring grad; start_pos < 0 or start_pos +
// seq > the tables' rows; tables not float32 and not x's dtype; mismatched devices;
// a dtype the device has no kernel for.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace loom::kernels {

/// x: [batch, seq, heads, head_dim]; cos, sin: [max_seq_len, head_dim / 2] tables
/// (angle p * theta^(-2i / head_dim) for position p, pair i). Pair i of every head at
/// seq index t is rotated by the table row p = start_pos + t:
///   y[2i] = x[2i] cos[p][i] - x[2i+1] sin[p][i],  y[2i+1] = x[2i] sin[p][i] + x[2i+1] cos[p][i]
/// Returns y, contiguous [batch, seq, heads, head_dim], x's dtype and device.
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t start_pos = 0);

}  // namespace loom::kernels
