// Causal scaled softmax on the CPU, over raw contiguous buffers: the attention
// probabilities of a causal Llama layer in one pass over the allowed keys.
//
// Shapes: scores, probs, dprobs, dscores are [matrices, q_len, k_len] contiguous.
// Query i of a matrix may attend to keys j <= i + (k_len - q_len) (the queries are
// the last q_len positions of the k_len keys), so row i has len_i = i + k_len -
// q_len + 1 allowed keys:
//   probs[i][j] = exp(scale s_ij - m_i) / sum_{k < len_i} exp(scale s_ik - m_i)   j < len_i
//   probs[i][j] = 0                                                                 j >= len_i
// with m_i = max_{k < len_i} scale s_ik (subtracting it keeps every exp argument
// <= 0, so nothing overflows). Backward, for the saved probs p and upstream dp:
//   dscores[i][j] = scale * p_ij * (dp_ij - sum_{k < len_i} dp_ik p_ik)   j < len_i, else 0
// Only the first len_i entries of an input row are ever read; the masked entries of
// the outputs are written as exact zeros.
//
// exp is the vector polynomial of simd_math.h (below 1e-7 for float, 2e-16 for double
// relative error); probabilities below 1.2e-38 (float) or 2.3e-308 (double) flush
// to 0. Sums are accumulated in T.
//
// Vectorisation and determinism as in rms_norm.h: 32-byte vectors, x86-64-v3 and
// baseline clones; rows are independent and each row's sums run in an order fixed by
// len_i alone, so outputs are bitwise identical for any at::get_num_threads().
//
// REQUIRES for every call: matrices >= 0, 0 <= q_len <= k_len (every row has at
// least one allowed key), no output aliases an input.
#pragma once

#include <cstdint>

namespace loom::kernels::cpu {

/// probs = causal softmax of scale * scores (above). T is float or double.
template <typename T>
void causalSoftmaxForward(const T* scores, T* probs, int64_t matrices, int64_t q_len, int64_t k_len, double scale);

/// dscores for upstream gradient dprobs, given the forward's probs.
template <typename T>
void causalSoftmaxBackward(const T* dprobs, const T* probs, T* dscores, int64_t matrices, int64_t q_len,
                           int64_t k_len, double scale);

}  // namespace loom::kernels::cpu
