// SwiGLU on CUDA, float32, over raw contiguous device buffers of n elements.
//
// Same formulas and conventions as kernels/cpu/swiglu.h: y = silu(gate) * up, the
// backward recomputes sigmoid from gate, dgate or dup may be null. sigmoid is
// 1 / (1 + e) for g >= 0 and e / (1 + e) for g < 0 with e = expf(-|g|), so nothing
// overflows. Element-wise, grid-stride: bitwise reproducible run to run.
//
// Each launcher enqueues one kernel on `stream`, checks the launch with
// LOOM_CUDA_CHECK (throws c10::Error) and returns without synchronising. Pointers are
// device pointers that must stay valid until the stream has run the work.
//
// REQUIRES for every call: n >= 0, no output aliases an input.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace loom::kernels::cuda {

void swigluForward(const float* gate, const float* up, float* y, int64_t n, cudaStream_t stream);

void swigluBackward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n,
                    cudaStream_t stream);

}  // namespace loom::kernels::cuda
