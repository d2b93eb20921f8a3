// SwiGLU on the CPU, over raw contiguous buffers of n elements: the gated unit of the
// Llama MLP, y = silu(gate) * up with silu(g) = g * sigmoid(g).
//
// Backward, with s = sigmoid(g) and ds/dg = s (1 - s):
//   dgate = dy * up * s * (1 + g (1 - s))
//   dup   = dy * g * s
// The backward recomputes s from gate instead of saving it (one exp per element is
// cheaper than another n-element tensor in memory).
//
// sigmoid is evaluated as 1 / (1 + e) for g >= 0 and e / (1 + e) for g < 0 with
// e = exp(-|g|) (simd_math.h), so nothing overflows for any finite g. For g below
// about -87.3 (float) or -708.4 (double) e flushes to 0, so s, and with it y, dgate
// and dup, become exactly 0 where s's true value is below 1.2e-38 (2.3e-308).
//
// Vectorisation: 32-byte GCC vector types, each entry point compiled for x86-64-v3
// and the baseline and picked at load time (simd.h). Elements are processed in
// fixed blocks and every element, the last partial vector included, goes through the
// same vector code, so all outputs are bitwise identical for any
// at::get_num_threads() on the same machine and build.
//
// REQUIRES for every call: n >= 0, no output aliases an input.
#pragma once

#include <cstdint>

namespace loom::kernels::cpu {

/// y = silu(gate) * up, T float or double.
template <typename T>
void swigluForward(const T* gate, const T* up, T* y, int64_t n);

/// Gradients for upstream gradient dy. dgate or dup may be null (not needed);
/// the other is overwritten.
template <typename T>
void swigluBackward(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n);

}  // namespace loom::kernels::cpu
