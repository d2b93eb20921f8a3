// Rotary position embedding (RoPE) on CUDA, float32, over raw device buffers.
//
// Same layouts, formula and tables as kernels/cpu/rope.h (x strided by a RopeLayout
// with a contiguous last dim, y contiguous, cos/sin [seq, head_dim / 2] rows for x's
// positions); the backward is the inverse rotation. One thread per pair, grid-stride
// over all pairs: each output is computed from its own pair and table entry, so
// results are bitwise reproducible run to run.
//
// Each launcher enqueues one kernel on `stream`, checks the launch with
// LOOM_CUDA_CHECK (throws c10::Error) and returns without synchronising. Pointers are
// device pointers that must stay valid until the stream has run the work.
//
// REQUIRES for every call: sizes >= 0, head_dim even, no output aliases an input.
#pragma once

#include "kernels/cpu/rope.h"  // RopeLayout (plain C++, shared with the CPU launchers)

#include <cuda_runtime_api.h>

namespace loom::kernels::cuda {

void ropeForward(const float* x, const RopeLayout& x_layout, const float* cos, const float* sin, float* y,
                 cudaStream_t stream);

void ropeBackward(const float* dy, const RopeLayout& dy_layout, const float* cos, const float* sin, float* dx,
                  cudaStream_t stream);

}  // namespace loom::kernels::cuda
