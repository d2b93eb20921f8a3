#include "kernels/cuda/causal_softmax.cuh"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/norm_util.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

namespace loom::kernels::cuda {
namespace {

using detail::blockReduce;
using detail::kWarpSize;
using detail::MaxOp;
using detail::SumOp;
using detail::kMaxRowBlocks;
using detail::kMaxThreadsPerRow;

/// Allowed keys of row `row`: query row % q_len sees keys 0 .. row % q_len + k_len - q_len.
__device__ int64_t allowedKeys(int64_t row, int64_t q_len, int64_t k_len) {
  return row % q_len + k_len - q_len + 1;
}

/// One block per row: max, sum of exp, then normalised probabilities and the zeros.
__global__ void causalSoftmaxForwardKernel(const float* __restrict__ scores, float* __restrict__ probs, int64_t rows,
                                           int64_t q_len, int64_t k_len, float scale) {
  __shared__ float shared[kWarpSize];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* s = scores + row * k_len;
    float* p = probs + row * k_len;
    const int64_t len = allowedKeys(row, q_len, k_len);
    float m = MaxOp::identity();
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
      m = fmaxf(m, scale * s[j]);
    }
    m = blockReduce<MaxOp>(m, shared);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
      sum += expf(scale * s[j] - m);
    }
    const float inv_sum = 1.0f / blockReduce<SumOp>(sum, shared);
    for (int64_t j = threadIdx.x; j < k_len; j += blockDim.x) {
      p[j] = j < len ? expf(scale * s[j] - m) * inv_sum : 0.0f;
    }
  }
}

/// One block per row: ds = scale * p * (dp - sum(dp * p)) over the allowed keys, 0 elsewhere.
__global__ void causalSoftmaxBackwardKernel(const float* __restrict__ dprobs, const float* __restrict__ probs,
                                            float* __restrict__ dscores, int64_t rows, int64_t q_len, int64_t k_len,
                                            float scale) {
  __shared__ float shared[kWarpSize];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t offset = row * k_len;
    const int64_t len = allowedKeys(row, q_len, k_len);
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
      dot += dprobs[offset + j] * probs[offset + j];
    }
    dot = blockReduce<SumOp>(dot, shared);
    for (int64_t j = threadIdx.x; j < k_len; j += blockDim.x) {
      dscores[offset + j] = j < len ? (scale * probs[offset + j]) * (dprobs[offset + j] - dot) : 0.0f;
    }
  }
}

/// Threads per row block: the row's width rounded up to whole warps, capped.
int threadsPerRow(int64_t k_len) {
  const int64_t warps = (k_len + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(std::min<int64_t>(kMaxThreadsPerRow, warps * kWarpSize));
}

unsigned rowBlocks(int64_t rows) {
  return static_cast<unsigned>(std::min(rows, kMaxRowBlocks));
}

}  // namespace

void causalSoftmaxForward(const float* scores, float* probs, int64_t matrices, int64_t q_len, int64_t k_len,
                          double scale, cudaStream_t stream) {
  const int64_t rows = matrices * q_len;
  if (rows == 0) {
    return;
  }
  causalSoftmaxForwardKernel<<<rowBlocks(rows), threadsPerRow(k_len), 0, stream>>>(scores, probs, rows, q_len, k_len,
                                                                                   static_cast<float>(scale));
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void causalSoftmaxBackward(const float* dprobs, const float* probs, float* dscores, int64_t matrices, int64_t q_len,
                           int64_t k_len, double scale, cudaStream_t stream) {
  const int64_t rows = matrices * q_len;
  if (rows == 0) {
    return;
  }
  causalSoftmaxBackwardKernel<<<rowBlocks(rows), threadsPerRow(k_len), 0, stream>>>(dprobs, probs, dscores, rows,
                                                                                    q_len, k_len,
                                                                                    static_cast<float>(scale));
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::kernels::cuda
