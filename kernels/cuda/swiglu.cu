#include "kernels/cuda/swiglu.cuh"

#include "kernels/cuda/cuda_check.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace loom::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Elements are grid-strided beyond this many blocks.
constexpr int64_t kMaxBlocks = 65535;

__device__ float stableSigmoid(float g) {
  const float e = expf(-fabsf(g));
  const float inv = 1.0f / (1.0f + e);
  return g < 0.0f ? e * inv : inv;
}

__global__ void swigluForwardKernel(const float* __restrict__ gate, const float* __restrict__ up,
                                    float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = gate[i];
    y[i] = g * stableSigmoid(g) * up[i];
  }
}

/// dgate = dy * up * s * (1 + g (1 - s)), dup = dy * g * s; either output may be null.
__global__ void swigluBackwardKernel(const float* __restrict__ dy, const float* __restrict__ gate,
                                     const float* __restrict__ up, float* __restrict__ dgate,
                                     float* __restrict__ dup, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float d = dy[i];
    const float g = gate[i];
    const float s = stableSigmoid(g);
    if (dup != nullptr) {
      dup[i] = d * (g * s);
    }
    if (dgate != nullptr) {
      dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
    }
  }
}

unsigned blocksFor(int64_t n) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

}  // namespace

void swigluForward(const float* gate, const float* up, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) {
    return;
  }
  swigluForwardKernel<<<blocksFor(n), kThreads, 0, stream>>>(gate, up, y, n);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void swigluBackward(const float* dy, const float* gate, const float* up, float* dgate, float* dup, int64_t n,
                    cudaStream_t stream) {
  if (n == 0 || (dgate == nullptr && dup == nullptr)) {
    return;
  }
  swigluBackwardKernel<<<blocksFor(n), kThreads, 0, stream>>>(dy, gate, up, dgate, dup, n);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::kernels::cuda
