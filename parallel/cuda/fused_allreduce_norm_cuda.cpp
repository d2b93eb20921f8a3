#include "parallel/cuda/fused_allreduce_norm_cuda.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fused_add_rms_norm.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "parallel/cuda/nccl_settle.h"
#include "runtime/core/error.h"
#include "runtime/dist/nccl_check.h"

#include <cuda_bf16.h>

namespace loom::parallel::cuda {
namespace {

// Workspace sections start on 256-byte boundaries (the vector kernels need 16).
constexpr size_t kAlign = 256;

size_t alignUp(size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

void checkArgs(const FusedNormArgs& a, const char* op) {
  LOOM_CHECK_INPUT(a.tokens >= 0 && a.hidden >= 1, op, ": bad shape [", a.tokens, ", ", a.hidden, "]");
  LOOM_CHECK_INPUT(a.tokens == 0 || (a.x && a.residual && a.residual_out && a.weight && a.out), op,
                   ": x, residual, residual_out, weight and out must all be device pointers");
}

ncclDataType_t ncclTypeOf(NormDtype dtype) {
  return dtype == NormDtype::kFloat32 ? ncclFloat32 : ncclBfloat16;
}

/// Widens `n` elements of x (args' dtype) into float32 `dst`.
void widen(const void* x, float* dst, int64_t n, NormDtype dtype, cudaStream_t stream) {
  if (dtype == NormDtype::kFloat32) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, x, sizeof(float) * n, cudaMemcpyDeviceToDevice, stream));
  } else {
    kernels::cuda::bfloat16ToFloat(static_cast<const __nv_bfloat16*>(x), dst, n, stream);
  }
}

/// The fused kernel on `rows` rows: float32 sums `a`, residual and outputs in `dtype`
/// (float32: rms_norm.cuh's kernel; bfloat16: fused_add_rms_norm.cuh's).
void addNorm(const float* a, const void* residual, const float* weight, void* y, void* residual_out, int64_t rows,
             int64_t hidden, NormDtype dtype, double eps, cudaStream_t stream) {
  if (dtype == NormDtype::kFloat32) {
    kernels::cuda::fusedAddRmsNormForward(a, static_cast<const float*>(residual), weight, static_cast<float*>(y),
                                          static_cast<float*>(residual_out), nullptr, rows, hidden, eps, stream);
  } else {
    kernels::cuda::fusedAddRmsNormForward(a, static_cast<const __nv_bfloat16*>(residual), weight,
                                          static_cast<__nv_bfloat16*>(y), static_cast<__nv_bfloat16*>(residual_out),
                                          nullptr, rows, hidden, eps, stream);
  }
}

/// Where reduceScatterAddRmsNorm keeps what in its workspace; P = ranks * s rows.
struct ScatterLayout {
  int64_t shard_rows = 0;            // s
  int64_t padded_rows = 0;           // P
  bool stage_input = false;          // x is widened/padded into `padded` (else reduced straight from x)
  bool gather_in_workspace = false;  // P != tokens: gathered P rows, `tokens` of them copied to out
  size_t padded_offset = 0, shard_offset = 0, gather_offset = 0, bytes = 0;
};

ScatterLayout scatterLayout(const FusedNormArgs& a, int ranks) {
  ScatterLayout l;
  l.shard_rows = shardRows(a.tokens, ranks);
  l.padded_rows = l.shard_rows * ranks;
  l.gather_in_workspace = l.padded_rows != a.tokens;
  l.stage_input = a.dtype != NormDtype::kFloat32 || l.gather_in_workspace;
  const auto row = static_cast<size_t>(a.hidden);
  size_t at = 0;
  l.padded_offset = at;
  at += l.stage_input ? alignUp(sizeof(float) * row * l.padded_rows) : 0;
  l.shard_offset = at;
  at += alignUp(sizeof(float) * row * l.shard_rows);
  l.gather_offset = at;
  at += l.gather_in_workspace ? alignUp(elementBytes(a.dtype) * row * l.padded_rows) : 0;
  l.bytes = at;
  return l;
}

int commSize(ncclComm_t comm) {
  int ranks = 0;
  LOOM_NCCL_CHECK(ncclCommCount(comm, &ranks), comm, "fused norm: communicator size");
  return ranks;
}

}  // namespace

size_t elementBytes(NormDtype dtype) {
  return dtype == NormDtype::kFloat32 ? sizeof(float) : sizeof(__nv_bfloat16);
}

size_t allReduceNormWorkspaceBytes(const FusedNormArgs& args) {
  return sizeof(float) * static_cast<size_t>(args.tokens * args.hidden);
}

void allReduceAddRmsNorm(const FusedNormArgs& args, void* workspace, ncclComm_t comm, cudaStream_t stream) {
  checkArgs(args, "allReduceAddRmsNorm");
  if (args.tokens == 0) {
    return;
  }
  auto* sum = static_cast<float*>(workspace);
  const int64_t n = args.tokens * args.hidden;
  if (args.dtype == NormDtype::kFloat32) {
    settleNccl(ncclAllReduce(args.x, sum, n, ncclFloat32, ncclSum, comm, stream), comm, "fused norm: ncclAllReduce");
  } else {
    widen(args.x, sum, n, args.dtype, stream);
    settleNccl(ncclAllReduce(sum, sum, n, ncclFloat32, ncclSum, comm, stream), comm, "fused norm: ncclAllReduce");
  }
  addNorm(sum, args.residual, args.weight, args.out, args.residual_out, args.tokens, args.hidden, args.dtype, args.eps,
          stream);
}

size_t reduceScatterNormWorkspaceBytes(const FusedNormArgs& args, int ranks) {
  return scatterLayout(args, ranks).bytes;
}

void reduceScatterAddRmsNorm(const FusedNormArgs& args, void* workspace, ncclComm_t comm, cudaStream_t stream) {
  checkArgs(args, "reduceScatterAddRmsNorm");
  if (args.tokens == 0) {
    return;
  }
  const int ranks = commSize(comm);
  int rank = 0;
  LOOM_NCCL_CHECK(ncclCommUserRank(comm, &rank), comm, "fused norm: rank");
  const ScatterLayout l = scatterLayout(args, ranks);
  auto* base = static_cast<char*>(workspace);
  const auto row = static_cast<size_t>(args.hidden);
  const size_t elem = elementBytes(args.dtype);

  const auto* send = static_cast<const float*>(args.x);  // float32 x with tokens == P: reduced in place of a copy
  if (l.stage_input) {
    auto* padded = reinterpret_cast<float*>(base + l.padded_offset);
    widen(args.x, padded, args.tokens * args.hidden, args.dtype, stream);
    const size_t tail = sizeof(float) * row * (l.padded_rows - args.tokens);
    LOOM_CUDA_CHECK(cudaMemsetAsync(padded + args.tokens * args.hidden, 0, tail, stream));
    send = padded;
  }
  auto* shard = reinterpret_cast<float*>(base + l.shard_offset);
  settleNccl(ncclReduceScatter(send, shard, l.shard_rows * args.hidden, ncclFloat32, ncclSum, comm, stream), comm,
             "fused norm: ncclReduceScatter");

  // The normalised shard lands at its own place in the gather buffer (rounded to the
  // dtype there), so the all-gather runs in place and every rank receives the same bytes.
  char* gathered = l.gather_in_workspace ? base + l.gather_offset : static_cast<char*>(args.out);
  char* mine = gathered + elem * row * l.shard_rows * rank;
  addNorm(shard, args.residual, args.weight, mine, args.residual_out, l.shard_rows, args.hidden, args.dtype, args.eps,
          stream);
  settleNccl(ncclAllGather(mine, gathered, l.shard_rows * args.hidden, ncclTypeOf(args.dtype), comm, stream), comm,
             "fused norm: ncclAllGather");
  if (l.gather_in_workspace) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(args.out, gathered, elem * row * args.tokens, cudaMemcpyDeviceToDevice, stream));
  }
}

}  // namespace loom::parallel::cuda
