#include "kernels/cuda/rms_norm.cuh"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/norm_util.cuh"

#include <cuda_runtime.h>

#include <algorithm>

namespace loom::kernels::cuda {
namespace {

using detail::blockSum;
using detail::kWarpSize;
using detail::kMaxRowBlocks;
using detail::kMaxThreadsPerRow;
// dweight partials: a chunk covers at least kMinRowsPerChunk rows, and there are at
// most kMaxChunks chunks (bounds the workspace); both depend on `rows` only.
constexpr int64_t kMinRowsPerChunk = 32;
constexpr int64_t kMaxChunks = 256;
// rmsNormDweightPartialKernel's block: kWarpSize columns x kRowLanes row lanes.
constexpr int kRowLanes = 8;

int64_t rowsPerChunk(int64_t rows) {
  return std::max(kMinRowsPerChunk, (rows + kMaxChunks - 1) / kMaxChunks);
}

int64_t chunkCount(int64_t rows) {
  return (rows + rowsPerChunk(rows) - 1) / rowsPerChunk(rows);
}

/// One block per row. residual == nullptr: plain RMSNorm of x; otherwise the row is
/// x + residual, written to residual_out (and read back by the thread that wrote it).
__global__ void rmsNormForwardKernel(const float* __restrict__ x, const float* residual,
                                     const float* __restrict__ weight, float* __restrict__ y, float* residual_out,
                                     float* __restrict__ rstd, int64_t rows, int64_t cols, float eps) {
  __shared__ float shared[kWarpSize];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t offset = row * cols;
    const float* src = x + offset;
    float sum_sq = 0.0f;
    if (residual != nullptr) {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        const float v = src[j] + residual[offset + j];
        residual_out[offset + j] = v;
        sum_sq += v * v;
      }
      src = residual_out + offset;
    } else {
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        sum_sq += src[j] * src[j];
      }
    }
    sum_sq = blockSum(sum_sq, shared);
    const float r = 1.0f / sqrtf(sum_sq / static_cast<float>(cols) + eps);
    if (rstd != nullptr && threadIdx.x == 0) {
      rstd[row] = r;
    }
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      y[offset + j] = src[j] * r * weight[j];
    }
  }
}

/// One block per row: dx = r * dy * w - x * (r^3 * sum(dy * w * x) / n) (+ dres).
__global__ void rmsNormBackwardDxKernel(const float* __restrict__ dy, const float* __restrict__ dres,
                                        const float* __restrict__ x, const float* __restrict__ weight,
                                        const float* __restrict__ rstd, float* __restrict__ dx, int64_t rows,
                                        int64_t cols) {
  __shared__ float shared[kWarpSize];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t offset = row * cols;
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      dot += dy[offset + j] * weight[j] * x[offset + j];
    }
    dot = blockSum(dot, shared);
    const float r = rstd[row];
    const float k = r * r * r * dot / static_cast<float>(cols);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      float g = r * dy[offset + j] * weight[j] - x[offset + j] * k;
      if (dres != nullptr) {
        g += dres[offset + j];
      }
      dx[offset + j] = g;
    }
  }
}

/// grid (ceil(cols / kWarpSize), chunks), block (kWarpSize, kRowLanes): partial[chunk][c] =
/// sum over the chunk's rows of dy * (x * rstd); lanes stride rows, then lane 0 adds the
/// lanes in order. Consecutive threads read consecutive columns (coalesced).
__global__ void rmsNormDweightPartialKernel(const float* __restrict__ dy, const float* __restrict__ x,
                                            const float* __restrict__ rstd, float* __restrict__ partial, int64_t rows,
                                            int64_t cols, int64_t rows_per_chunk) {
  __shared__ float lanes[kRowLanes][kWarpSize];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarpSize + threadIdx.x;
  const int64_t row_begin = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t row_end = min(rows, row_begin + rows_per_chunk);
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t row = row_begin + threadIdx.y; row < row_end; row += kRowLanes) {
      sum += dy[row * cols + col] * (x[row * cols + col] * rstd[row]);
    }
  }
  lanes[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < kRowLanes; ++lane) {
      total += lanes[lane][threadIdx.x];
    }
    partial[blockIdx.y * cols + col] = total;
  }
}

/// dweight[c] = sum over chunks (ascending) of partial[chunk][c].
__global__ void rmsNormDweightSumKernel(const float* __restrict__ partial, int64_t chunks, float* __restrict__ dweight,
                                        int64_t cols) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) {
    return;
  }
  float total = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    total += partial[chunk * cols + col];
  }
  dweight[col] = total;
}

/// Threads per row block: the row's width rounded up to whole warps, capped.
int threadsPerRow(int64_t cols) {
  const int64_t warps = (cols + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(std::min<int64_t>(kMaxThreadsPerRow, warps * kWarpSize));
}

unsigned rowBlocks(int64_t rows) {
  return static_cast<unsigned>(std::min(rows, kMaxRowBlocks));
}

void launchForward(const float* x, const float* residual, const float* weight, float* y, float* residual_out,
                   float* rstd, int64_t rows, int64_t cols, double eps, cudaStream_t stream) {
  if (rows == 0) {
    return;
  }
  rmsNormForwardKernel<<<rowBlocks(rows), threadsPerRow(cols), 0, stream>>>(x, residual, weight, y, residual_out, rstd,
                                                                            rows, cols, static_cast<float>(eps));
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void launchBackward(const float* dy, const float* dres, const float* x, const float* weight, const float* rstd,
                    float* dx, float* dweight, void* workspace, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows > 0) {
    rmsNormBackwardDxKernel<<<rowBlocks(rows), threadsPerRow(cols), 0, stream>>>(dy, dres, x, weight, rstd, dx, rows,
                                                                                 cols);
    LOOM_CUDA_CHECK(cudaGetLastError());
  }
  if (dweight == nullptr) {
    return;
  }
  if (rows == 0) {
    LOOM_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * cols, stream));
    return;
  }
  auto* partial = static_cast<float*>(workspace);
  const int64_t chunks = chunkCount(rows);
  const unsigned col_blocks = static_cast<unsigned>((cols + kWarpSize - 1) / kWarpSize);
  rmsNormDweightPartialKernel<<<dim3(col_blocks, static_cast<unsigned>(chunks)), dim3(kWarpSize, kRowLanes), 0,
                                stream>>>(dy, x, rstd, partial, rows, cols, rowsPerChunk(rows));
  LOOM_CUDA_CHECK(cudaGetLastError());
  constexpr int kSumThreads = 256;
  rmsNormDweightSumKernel<<<static_cast<unsigned>((cols + kSumThreads - 1) / kSumThreads), kSumThreads, 0, stream>>>(
      partial, chunks, dweight, cols);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t rmsNormBackwardWorkspaceBytes(int64_t rows, int64_t cols) {
  return sizeof(float) * static_cast<size_t>(chunkCount(rows) * cols);
}

void rmsNormForward(const float* x, const float* weight, float* y, float* rstd, int64_t rows, int64_t cols, double eps,
                    cudaStream_t stream) {
  launchForward(x, nullptr, weight, y, nullptr, rstd, rows, cols, eps, stream);
}

void rmsNormBackward(const float* dy, const float* x, const float* weight, const float* rstd, float* dx, float* dweight,
                     void* workspace, int64_t rows, int64_t cols, cudaStream_t stream) {
  launchBackward(dy, nullptr, x, weight, rstd, dx, dweight, workspace, rows, cols, stream);
}

void fusedAddRmsNormForward(const float* x, const float* residual, const float* weight, float* y, float* residual_out,
                            float* rstd, int64_t rows, int64_t cols, double eps, cudaStream_t stream) {
  launchForward(x, residual, weight, y, residual_out, rstd, rows, cols, eps, stream);
}

void fusedAddRmsNormBackward(const float* dy, const float* dresidual_out, const float* residual_out,
                             const float* weight, const float* rstd, float* dx, float* dweight, void* workspace,
                             int64_t rows, int64_t cols, cudaStream_t stream) {
  launchBackward(dy, dresidual_out, residual_out, weight, rstd, dx, dweight, workspace, rows, cols, stream);
}

}  // namespace loom::kernels::cuda
