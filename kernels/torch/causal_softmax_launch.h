// Internal to kernels/torch: runs the causal softmax kernels of a tensor's device on
// tensors that causal_softmax_ops.cpp has already validated. Not part of the public API.
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::kernels::detail {

/// probs (scores' shape) = causal softmax of scale * scores over the last dim.
/// REQUIRES: scores contiguous with >= 2 dims [..., q_len, k_len], q_len <= k_len,
/// a dtype with a kernel on its device (hasKernel).
at::Tensor runCausalSoftmaxForward(const at::Tensor& scores, double scale);

/// dscores for upstream gradient dprobs. REQUIRES: probs from the forward; dprobs
/// contiguous and shaped like probs, same dtype and device.
at::Tensor runCausalSoftmaxBackward(const at::Tensor& dprobs, const at::Tensor& probs, double scale);

}  // namespace loom::kernels::detail
