// RMSNorm as differentiable libtorch ops: what the model calls, and what
// libloom_torch.so registers as torch.ops.loom.rms_norm / fused_add_rms_norm.
//
// Formulas and the backward derivation: kernels/cpu/rms_norm.h and docs/kernels.md.
// CPU tensors run kernels/cpu (float32, float64); CUDA tensors run kernels/cuda
// (float32) on the current CUDA stream when loom was built with LOOM_WITH_CUDA against
// a CUDA libtorch. Non-contiguous inputs are copied to contiguous ones first.
//
// Gradients flow to every tensor input (first order only: a backward run with
// create_graph=True throws, since the kernels' gradients are not themselves
// differentiable).
//
// Errors (c10::Error, RuntimeError in Python), each message prefixed with the op name:
// x with no dims, weight not 1-D or its size != x's last dim (or that dim is 0),
// residual's shape != x's, mismatched dtypes or devices, a dtype the device has no
// kernel for, a device other than CPU/CUDA, eps negative or not finite.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace loom::kernels {

/// y = x * rsqrt(mean(x^2, last dim) + eps) * weight; weight has x.size(-1) elements.
/// y has x's shape, dtype and device.
at::Tensor rmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

/// residual_out = x + residual; out = rmsNorm(residual_out, weight, eps).
/// Returns (out, residual_out), both with x's shape. This is the single-rank case of
/// the fused AllReduce + RMSNorm (ARCHITECTURE.md §2).
std::tuple<at::Tensor, at::Tensor> fusedAddRmsNorm(const at::Tensor& x, const at::Tensor& residual,
                                                   const at::Tensor& weight, double eps);

/// The gradients of rmsNorm(x, weight, eps) for the output gradient dy, plus
/// dresidual (undefined, or like dy) added to dx as fusedAddRmsNorm's
/// residual_out gradient would be: (dx, dweight), by the same kernels, without
/// autograd. For callers that run a norm's backward themselves, off the
/// autograd engine's threads (tensor parallelism's communication stream).
/// dy and dresidual must have x's shape, dtype and device.
std::tuple<at::Tensor, at::Tensor> rmsNormBackward(const at::Tensor& dy, const at::Tensor& dresidual,
                                                   const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace loom::kernels
