// SwiGLU as a differentiable libtorch op: what the model's MLP calls instead of
// silu(w1 x) * (w3 x), and what libloom_torch.so registers as torch.ops.loom.swiglu.
//
// Formulas and the overflow-free sigmoid: kernels/cpu/swiglu.h and docs/kernels.md.
// CPU tensors run kernels/cpu (float32, float64); CUDA tensors run kernels/cuda
// (float32) on the current CUDA stream when loom was built with LOOM_WITH_CUDA against
// a CUDA libtorch. Non-contiguous inputs are copied to contiguous ones first.
// Gradients flow to gate and up (first order: a backward run with create_graph=True
// throws).
//
// Errors (c10::Error, RuntimeError in Python), each message prefixed with
// "loom::swiglu": gate and up of different shapes, dtypes or devices, a dtype the
// device has no kernel for.
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::kernels {

/// silu(gate) * up = gate * sigmoid(gate) * up, element-wise; gate and up have one
/// shape (any dims). Returns a contiguous tensor of that shape, dtype and device.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

}  // namespace loom::kernels
