// Internal to kernels/torch: runs the RMSNorm kernels of a tensor's device on
// tensors that rms_norm_ops.cpp has already validated. Not part of the public API.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace loom::kernels::detail {

/// Whether this build has an RMSNorm kernel for tensors of `dtype` on `device`.
bool hasKernel(c10::Device device, c10::ScalarType dtype);

/// What hasKernel accepts, in words, for error messages.
std::string supportedKernels();

struct RmsNormForwardOutputs {
  at::Tensor y;             ///< x's shape
  at::Tensor residual_out;  ///< x + residual; undefined for the plain op
  at::Tensor rstd;          ///< [rows], one r per row, for the backward
};

struct RmsNormGradients {
  at::Tensor dx;       ///< also the gradient of residual for the fused op
  at::Tensor dweight;  ///< undefined unless requested
};

/// REQUIRES: x, weight (and residual, if defined) contiguous, on one device, one dtype
/// with a kernel there, weight.numel() == x.size(-1) >= 1, residual shaped like x.
/// residual undefined: plain RMSNorm; defined: the fused add.
RmsNormForwardOutputs runRmsNormForward(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                        double eps);

/// REQUIRES: as above for x (residual_out for the fused op), weight and rstd from the
/// forward; dy contiguous and shaped like x; dresidual_out undefined or like dy.
RmsNormGradients runRmsNormBackward(const at::Tensor& dy, const at::Tensor& dresidual_out, const at::Tensor& x,
                                    const at::Tensor& weight, const at::Tensor& rstd, bool need_dweight);

}  // namespace loom::kernels::detail
