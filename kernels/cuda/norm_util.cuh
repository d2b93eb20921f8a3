// What loom's row kernels share (internal to .cu files; never include it from
// host-only code): groups of 8 bfloat16 or float32 elements moved with 16-byte
// accesses and widened to float32, block-wide float reductions (sum, max), and
// the opt-in for rows cached in more than 48 KiB of dynamic shared memory.
#pragma once

#include "kernels/cuda/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace loom::kernels::cuda::detail {

constexpr int kWarpSize = 32;
/// One block per row: at most this many threads per block.
constexpr int kMaxThreadsPerRow = 512;
/// Rows are grid-strided beyond this many blocks.
constexpr int64_t kMaxRowBlocks = 65535;
/// Elements per vector group: 16 bytes of bfloat16, 32 bytes (two accesses) of float32.
constexpr int kGroup = 8;

__device__ inline float toFloat(float v) {
  return v;
}
__device__ inline float toFloat(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
/// Round to nearest even, as c10::BFloat16 (the CPU path) rounds.
__device__ inline __nv_bfloat16 toBfloat16(float v) {
  return __float2bfloat16_rn(v);
}

/// REQUIRES: p is 16-byte aligned.
__device__ inline void loadGroup(const float* p, float (&v)[kGroup]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/// Eight bfloat16 values packed in 16 bytes, widened to float.
__device__ inline void unpackBf16(const uint4& bits, float (&v)[kGroup]) {
  const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&bits);
#pragma unroll
  for (int i = 0; i < kGroup / 2; ++i) {
    const float2 f = __bfloat1622float2(pairs[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

/// Eight floats rounded to bfloat16 (nearest even) and packed in 16 bytes.
__device__ inline uint4 packBf16(const float (&v)[kGroup]) {
  uint4 bits;
  auto* pairs = reinterpret_cast<__nv_bfloat162*>(&bits);
#pragma unroll
  for (int i = 0; i < kGroup / 2; ++i) {
    pairs[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  }
  return bits;
}

__device__ inline void loadGroup(const __nv_bfloat16* p, float (&v)[kGroup]) {
  unpackBf16(*reinterpret_cast<const uint4*>(p), v);
}

__device__ inline void storeGroup(float* p, const float (&v)[kGroup]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ inline void storeGroup(__nv_bfloat16* p, const float (&v)[kGroup]) {
  *reinterpret_cast<uint4*>(p) = packBf16(v);
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  __device__ static float identity() { return 0.0f; }
};

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ static float identity() { return -INFINITY; }
};

template <typename Op>
__device__ inline float warpReduce(float value) {
  const Op op;
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

/// Op over `value` of every thread of the block, returned to all of them, in an
/// order fixed by blockDim alone. REQUIRES: blockDim.x is a multiple of
/// kWarpSize; every thread of the block calls it.
template <typename Op>
__device__ inline float blockReduce(float value, float* shared /* [kWarpSize] */) {
  value = warpReduce<Op>(value);
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  if (lane == 0) {
    shared[warp] = value;
  }
  __syncthreads();
  const int warps = blockDim.x / kWarpSize;
  value = warpReduce<Op>(lane < warps ? shared[lane] : Op::identity());
  __syncthreads();  // shared may be reused by the next call
  return value;
}

__device__ inline float blockSum(float value, float* shared /* [kWarpSize] */) {
  return blockReduce<SumOp>(value, shared);
}

inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

/// Threads for a row of `units` (groups or elements): whole warps, at most `max_threads`.
inline int threadsFor(int64_t units, int max_threads) {
  const int64_t warps = (units + kWarpSize - 1) / kWarpSize;
  return static_cast<int>(std::min<int64_t>(max_threads, warps * kWarpSize));
}

/// Lets `kernel` use `bytes` of dynamic shared memory on top of its static shared memory:
/// a no-op while the total fits the 48 KiB every device grants; beyond, the total is checked
/// against the device's opt-in limit (InputError with `what` and both sizes when the row is
/// too wide) and the dynamic part is requested from the runtime.
template <typename Kernel>
void reserveDynamicSharedMemory(Kernel* kernel, size_t bytes, const char* what) {
  constexpr size_t kDefaultBytes = 48 * 1024;
  cudaFuncAttributes attributes{};
  LOOM_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  const size_t total = bytes + attributes.sharedSizeBytes;
  if (total <= kDefaultBytes) {
    return;
  }
  int device = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&device));
  int optin = 0;
  LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  LOOM_CUDA_REQUIRE(total <= static_cast<size_t>(optin),
                    std::string(what) + ": a row of float32 needs " + std::to_string(total) +
                        " bytes of shared memory but CUDA device " + std::to_string(device) + " allows " +
                        std::to_string(optin) + " per block; use a narrower hidden size");
  LOOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace loom::kernels::cuda::detail
