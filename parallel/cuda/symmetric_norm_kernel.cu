#include "parallel/cuda/symmetric_norm_kernel.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/norm_util.cuh"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>

namespace loom::parallel::cuda::detail {
namespace {

using kernels::cuda::detail::blockSum;
using kernels::cuda::detail::kGroup;
using kernels::cuda::detail::kWarpSize;
using kernels::cuda::detail::loadGroup;
using kernels::cuda::detail::packBf16;
using kernels::cuda::detail::storeGroup;
using kernels::cuda::detail::unpackBf16;

constexpr int kMaxThreads = 1024;

// multimem.* (PTX 8.1, sm_90): a load through the multicast address returns the
// sum over every rank's copy, reduced in the NVSwitch; a store writes every copy.
__device__ inline void multimemSum(const float* mc, float (&v)[kGroup]) {
#if __CUDA_ARCH__ >= 900
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    asm volatile("multimem.ld_reduce.relaxed.sys.global.add.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v[4 * half]), "=f"(v[4 * half + 1]), "=f"(v[4 * half + 2]), "=f"(v[4 * half + 3])
                 : "l"(mc + 4 * half)
                 : "memory");
  }
#else
  __trap();
#endif
}

__device__ inline void multimemSum(const __nv_bfloat16* mc, float (&v)[kGroup]) {
#if __CUDA_ARCH__ >= 900
  uint4 bits;
  asm volatile("multimem.ld_reduce.relaxed.sys.global.add.acc::f32.v4.bf16x2 {%0, %1, %2, %3}, [%4];"
               : "=r"(bits.x), "=r"(bits.y), "=r"(bits.z), "=r"(bits.w)
               : "l"(mc)
               : "memory");
  unpackBf16(bits, v);
#else
  __trap();
#endif
}

__device__ inline void multimemStore(float* mc, const float (&v)[kGroup]) {
#if __CUDA_ARCH__ >= 900
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    asm volatile("multimem.st.relaxed.sys.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(mc + 4 * half), "f"(v[4 * half]),
                 "f"(v[4 * half + 1]), "f"(v[4 * half + 2]), "f"(v[4 * half + 3])
                 : "memory");
  }
#else
  __trap();
#endif
}

/// The packed bfloat16 bits travel as four 32-bit lanes (multimem.st has no bf16x2 store).
__device__ inline void multimemStore(__nv_bfloat16* mc, const float (&v)[kGroup]) {
#if __CUDA_ARCH__ >= 900
  const uint4 bits = packBf16(v);
  asm volatile("multimem.st.relaxed.sys.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(mc), "r"(bits.x), "r"(bits.y),
               "r"(bits.z), "r"(bits.w)
               : "memory");
#else
  __trap();
#endif
}

/// v = the sum over the ranks of the group at byte `offset` of the window.
template <typename T, bool kMulticast>
__device__ inline void sumOverRanks(const SymmetricNormLaunch& a, size_t offset, float (&v)[kGroup]) {
  if constexpr (kMulticast) {
    multimemSum(static_cast<const T*>(ncclGetLsaMultimemPointer(a.window, offset, a.dev_comm)), v);
  } else {
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      v[k] = 0.0f;
    }
    for (int peer = 0; peer < a.dev_comm.lsaSize; ++peer) {
      float part[kGroup];
      loadGroup(static_cast<const T*>(ncclGetLsaPointer(a.window, offset, peer)), part);
#pragma unroll
      for (int k = 0; k < kGroup; ++k) {
        v[k] += part[k];
      }
    }
  }
}

/// Writes the group (rounded to T) at byte `offset` of every rank's window.
template <typename T, bool kMulticast>
__device__ inline void storeToRanks(const SymmetricNormLaunch& a, size_t offset, const float (&v)[kGroup]) {
  if constexpr (kMulticast) {
    multimemStore(static_cast<T*>(ncclGetLsaMultimemPointer(a.window, offset, a.dev_comm)), v);
  } else {
    for (int peer = 0; peer < a.dev_comm.lsaSize; ++peer) {
      storeGroup(static_cast<T*>(ncclGetLsaPointer(a.window, offset, peer)), v);
    }
  }
}

/// symmetric_norm_kernel.h describes the algorithm. The float32 row is cached in
/// shared memory as [kGroup][groups]; each thread reads back only what it wrote.
template <typename T, bool kMulticast>
__global__ void __launch_bounds__(kMaxThreads) symmetricAddRmsNormKernel(const SymmetricNormLaunch a) {
  extern __shared__ float4 row_storage[];
  float* row = reinterpret_cast<float*>(row_storage);
  __shared__ float scratch[kWarpSize];
  ncclLsaBarrierSession<ncclCoopCta> barrier(ncclCoopCta(), a.dev_comm, ncclTeamTagLsa(), blockIdx.x);
  // Acquire: the peers' partials written before their launch are visible. Release:
  // ours are, to them.
  barrier.sync(ncclCoopCta(), ::cuda::memory_order_acq_rel);

  const int64_t groups = a.hidden / kGroup;
  const auto row_bytes = static_cast<size_t>(a.hidden) * sizeof(T);
  const auto* residual = static_cast<const T*>(a.residual);
  auto* residual_out = static_cast<T*>(a.residual_out);
  const int64_t first = static_cast<int64_t>(a.dev_comm.lsaRank) * a.shard_rows;
  for (int64_t local = blockIdx.x; local < a.shard_rows; local += gridDim.x) {
    const int64_t token = first + local;
    const bool real = token < a.tokens;  // uniform over the block
    const size_t row_offset = static_cast<size_t>(a.staging_row + token) * row_bytes;
    const int64_t shard_base = local * a.hidden;
    float sum_sq = 0.0f;
    for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
      float v[kGroup] = {};
      if (real) {
        sumOverRanks<T, kMulticast>(a, row_offset + sizeof(T) * kGroup * g, v);
      }
      float res[kGroup];
      loadGroup(residual + shard_base + kGroup * g, res);
#pragma unroll
      for (int k = 0; k < kGroup; ++k) {
        v[k] += res[k];
        sum_sq += v[k] * v[k];
        row[k * groups + g] = v[k];
      }
      storeGroup(residual_out + shard_base + kGroup * g, v);
    }
    sum_sq = blockSum(sum_sq, scratch);
    const float rs = 1.0f / sqrtf(sum_sq / static_cast<float>(a.hidden) + a.eps);
    if (real) {
      for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
        float w[kGroup];
        float out[kGroup];
        loadGroup(a.weight + kGroup * g, w);
#pragma unroll
        for (int k = 0; k < kGroup; ++k) {
          out[k] = row[k * groups + g] * rs * w[k];
        }
        storeToRanks<T, kMulticast>(a, row_offset + sizeof(T) * kGroup * g, out);
      }
    }
  }
  // Release: our stores reach every peer before it leaves; acquire: theirs reach us.
  barrier.sync(ncclCoopCta(), ::cuda::memory_order_acq_rel);
}

template <typename T, bool kMulticast>
void launchTyped(const SymmetricNormLaunch& args, const SymmetricNormShape& shape, cudaStream_t stream) {
  auto* kernel = symmetricAddRmsNormKernel<T, kMulticast>;
  kernels::cuda::detail::reserveDynamicSharedMemory(kernel, shape.shared_bytes, "symmetricAllReduceAddRmsNorm");
  kernel<<<shape.blocks, shape.threads, shape.shared_bytes, stream>>>(args);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

SymmetricNormShape symmetricNormShape(int64_t shard_rows, int64_t hidden, int max_ctas) {
  SymmetricNormShape shape;
  shape.blocks = static_cast<unsigned>(std::min<int64_t>(max_ctas, shard_rows));
  shape.threads = kernels::cuda::detail::threadsFor(hidden / kGroup, kMaxThreads);
  shape.shared_bytes = sizeof(float) * static_cast<size_t>(hidden);
  return shape;
}

void launchSymmetricAddRmsNorm(const SymmetricNormLaunch& args, NormDtype dtype, bool multicast,
                               const SymmetricNormShape& shape, cudaStream_t stream) {
  if (shape.blocks == 0) {
    return;
  }
  if (dtype == NormDtype::kFloat32) {
    multicast ? launchTyped<float, true>(args, shape, stream) : launchTyped<float, false>(args, shape, stream);
  } else {
    multicast ? launchTyped<__nv_bfloat16, true>(args, shape, stream)
              : launchTyped<__nv_bfloat16, false>(args, shape, stream);
  }
}

}  // namespace loom::parallel::cuda::detail
