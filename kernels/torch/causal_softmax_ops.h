// Causal scaled softmax as a differentiable libtorch op: what the model's attention
// calls instead of scale + mask-add + softmax, and what libloom_torch.so registers as
// torch.ops.loom.causal_softmax.
//
// Formulas, the mask and the exp: kernels/cpu/causal_softmax.h and docs/kernels.md.
// CPU tensors run kernels/cpu (float32, float64); CUDA tensors run kernels/cuda
// (float32) on the current CUDA stream when loom was built with LOOM_WITH_CUDA against
// a CUDA libtorch. A non-contiguous input is copied to a contiguous one first.
// Gradients flow to scores (first order: a backward run with create_graph=True
// throws).
//
// Errors (c10::Error, RuntimeError in Python), each message prefixed with
// "loom::causal_softmax": scores with fewer than 2 dims, q_len > k_len, scale not
// finite, a dtype the device has no kernel for.
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::kernels {

/// scores: [..., q_len, k_len] with q_len <= k_len (the model passes its attention
/// scores viewed as [batch * kv_heads * group, seq, seq]). Query i attends to keys
/// j <= i + (k_len - q_len):
///   probs[..., i, j] = softmax over the allowed j of scale * scores[..., i, j], else exactly 0.
/// Returns probs, scores' shape, dtype and device, contiguous.
at::Tensor causalSoftmax(const at::Tensor& scores, double scale);

}  // namespace loom::kernels
