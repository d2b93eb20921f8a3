#include "kernels/cuda/fused_add_rms_norm.cuh"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/norm_util.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace loom::kernels::cuda {
namespace {

using detail::kGroup;
using detail::kWarpSize;

using detail::kMaxRowBlocks;
using detail::kMaxThreadsPerRow;

/// One block per row. kVector: thread t owns groups t, t + blockDim, ... of 8 elements;
/// otherwise single elements. The float32 row lives in `row` ([kGroup][groups] when
/// kVector, so a warp's shared-memory accesses hit distinct banks); each thread reads
/// back only what it wrote, so no barrier guards it beyond blockSum's.
template <typename XT, bool kVector>
__global__ void fusedAddRmsNormRowKernel(const XT* x, const __nv_bfloat16* residual, const float* __restrict__ weight,
                                         __nv_bfloat16* y, __nv_bfloat16* residual_out, float* __restrict__ rstd,
                                         int64_t rows, int64_t cols, float eps) {
  extern __shared__ float4 row_storage[];
  float* row = reinterpret_cast<float*>(row_storage);
  __shared__ float scratch[kWarpSize];
  const int64_t units = kVector ? cols / kGroup : cols;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = r * cols;
    float sum_sq = 0.0f;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      if constexpr (kVector) {
        float v[kGroup];
        float res[kGroup];
        detail::loadGroup(x + base + u * kGroup, v);
        detail::loadGroup(residual + base + u * kGroup, res);
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          v[k] += res[k];
          sum_sq += v[k] * v[k];
          row[k * units + u] = v[k];
        }
        detail::storeGroup(residual_out + base + u * kGroup, v);
      } else {
        const float v = detail::toFloat(x[base + u]) + detail::toFloat(residual[base + u]);
        sum_sq += v * v;
        row[u] = v;
        residual_out[base + u] = detail::toBfloat16(v);
      }
    }
    sum_sq = detail::blockSum(sum_sq, scratch);
    const float rs = 1.0f / sqrtf(sum_sq / static_cast<float>(cols) + eps);
    if (rstd != nullptr && threadIdx.x == 0) {
      rstd[r] = rs;
    }
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      if constexpr (kVector) {
        float w[kGroup];
        float out[kGroup];
        detail::loadGroup(weight + u * kGroup, w);
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          out[k] = row[k * units + u] * rs * w[k];
        }
        detail::storeGroup(y + base + u * kGroup, out);
      } else {
        y[base + u] = detail::toBfloat16(row[u] * rs * weight[u]);
      }
    }
  }
}

__global__ void bfloat16ToFloatKernel(const __nv_bfloat16* __restrict__ in, float* __restrict__ out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    out[i] = __bfloat162float(in[i]);
  }
}

template <typename XT>
void launchRows(const XT* x, const __nv_bfloat16* residual, const float* weight, __nv_bfloat16* y,
                __nv_bfloat16* residual_out, float* rstd, int64_t rows, int64_t cols, double eps, cudaStream_t stream) {
  LOOM_CUDA_REQUIRE(rows >= 0 && cols >= 1, "fusedAddRmsNormForward: bad shape [" + std::to_string(rows) + ", " +
                                                std::to_string(cols) + "]; rows >= 0 and cols >= 1 are required");
  if (rows == 0) {
    return;
  }
  const bool vector = cols % kGroup == 0 && detail::aligned16(x) && detail::aligned16(residual) &&
                      detail::aligned16(weight) && detail::aligned16(y) && detail::aligned16(residual_out);
  auto* kernel = vector ? fusedAddRmsNormRowKernel<XT, true> : fusedAddRmsNormRowKernel<XT, false>;
  const size_t shared_bytes = sizeof(float) * static_cast<size_t>(cols);
  detail::reserveDynamicSharedMemory(kernel, shared_bytes, "fusedAddRmsNormForward");
  const int threads = detail::threadsFor(vector ? cols / kGroup : cols, kMaxThreadsPerRow);
  const auto blocks = static_cast<unsigned>(std::min(rows, kMaxRowBlocks));
  kernel<<<blocks, threads, shared_bytes, stream>>>(x, residual, weight, y, residual_out, rstd, rows, cols,
                                                    static_cast<float>(eps));
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void fusedAddRmsNormForward(const __nv_bfloat16* x, const __nv_bfloat16* residual, const float* weight,
                            __nv_bfloat16* y, __nv_bfloat16* residual_out, float* rstd, int64_t rows, int64_t cols,
                            double eps, cudaStream_t stream) {
  launchRows(x, residual, weight, y, residual_out, rstd, rows, cols, eps, stream);
}

void fusedAddRmsNormForward(const float* x, const __nv_bfloat16* residual, const float* weight, __nv_bfloat16* y,
                            __nv_bfloat16* residual_out, float* rstd, int64_t rows, int64_t cols, double eps,
                            cudaStream_t stream) {
  launchRows(x, residual, weight, y, residual_out, rstd, rows, cols, eps, stream);
}

void bfloat16ToFloat(const __nv_bfloat16* in, float* out, int64_t n, cudaStream_t stream) {
  LOOM_CUDA_REQUIRE(n >= 0, "bfloat16ToFloat: n = " + std::to_string(n) + " < 0");
  if (n == 0) {
    return;
  }
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 4096;  // grid-stride beyond: enough to fill any current GPU
  const auto blocks = static_cast<unsigned>(std::min((n + kThreads - 1) / kThreads, kMaxBlocks));
  bfloat16ToFloatKernel<<<blocks, kThreads, 0, stream>>>(in, out, n);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::kernels::cuda
