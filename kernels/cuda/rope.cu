#include "kernels/cuda/rope.cuh"

#include "kernels/cuda/cuda_check.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace loom::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// Pairs are grid-strided beyond this many blocks.
constexpr int64_t kMaxBlocks = 65535;

/// One thread per pair (b, t, h, i), numbered with i fastest, i.e. in y's order.
/// signed_sin_scale is -1 for the rotation and +1 for its inverse:
///   out[2i] = in[2i] c + in[2i+1] s',  out[2i+1] = in[2i+1] c - in[2i] s',  s' = signed_sin_scale * s
__global__ void ropeRotateKernel(const float* __restrict__ in, RopeLayout layout, const float* __restrict__ cos,
                                 const float* __restrict__ sin, float* __restrict__ out, float signed_sin_scale,
                                 int64_t total_pairs) {
  const int64_t pairs = layout.head_dim / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total_pairs;
       idx += stride) {
    const int64_t i = idx % pairs;
    const int64_t row = idx / pairs;  // (b * seq + t) * heads + h
    const int64_t h = row % layout.heads;
    const int64_t bt = row / layout.heads;
    const int64_t t = bt % layout.seq;
    const int64_t b = bt / layout.seq;
    const float* src = in + b * layout.batch_stride + t * layout.seq_stride + h * layout.head_stride + 2 * i;
    const float x0 = src[0];
    const float x1 = src[1];
    const float c = cos[t * pairs + i];
    const float s = signed_sin_scale * sin[t * pairs + i];
    float* dst = out + row * layout.head_dim + 2 * i;
    dst[0] = x0 * c + x1 * s;
    dst[1] = x1 * c - x0 * s;
  }
}

void launchRotate(const float* in, const RopeLayout& layout, const float* cos, const float* sin, float* out,
                  float signed_sin_scale, cudaStream_t stream) {
  const int64_t total_pairs = layout.batch * layout.seq * layout.heads * (layout.head_dim / 2);
  if (total_pairs == 0) {
    return;
  }
  const auto blocks = static_cast<unsigned>(std::min(kMaxBlocks, (total_pairs + kThreads - 1) / kThreads));
  ropeRotateKernel<<<blocks, kThreads, 0, stream>>>(in, layout, cos, sin, out, signed_sin_scale, total_pairs);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void ropeForward(const float* x, const RopeLayout& x_layout, const float* cos, const float* sin, float* y,
                 cudaStream_t stream) {
  launchRotate(x, x_layout, cos, sin, y, -1.0f, stream);
}

void ropeBackward(const float* dy, const RopeLayout& dy_layout, const float* cos, const float* sin, float* dx,
                  cudaStream_t stream) {
  launchRotate(dy, dy_layout, cos, sin, dx, 1.0f, stream);
}

}  // namespace loom::kernels::cuda
