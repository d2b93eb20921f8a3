// Causal scaled softmax on CUDA, float32, over raw device buffers.
//
// Same layout, mask, formulas and REQUIRES as kernels/cpu/causal_softmax.h: row i of
// each [q_len, k_len] matrix attends to keys j <= i + k_len - q_len, masked entries
// of the outputs are exact zeros and are never read from the inputs. exp is expf
// (CUDA's full-precision one, not __expf).
//
// One thread block per row (grid-stride beyond 65535 rows, up to 512 threads): the
// row max and the sums go through warp shuffles and one shared-memory hop, in an
// order fixed by k_len, so results are bitwise reproducible run to run.
//
// Each launcher enqueues one kernel on `stream`, checks the launch with
// LOOM_CUDA_CHECK (throws c10::Error) and returns without synchronising. Pointers are
// device pointers that must stay valid until the stream has run the work.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace loom::kernels::cuda {

void causalSoftmaxForward(const float* scores, float* probs, int64_t matrices, int64_t q_len, int64_t k_len,
                          double scale, cudaStream_t stream);

void causalSoftmaxBackward(const float* dprobs, const float* probs, float* dscores, int64_t matrices, int64_t q_len,
                           int64_t k_len, double scale, cudaStream_t stream);

}  // namespace loom::kernels::cuda
