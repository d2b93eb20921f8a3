#include "parallel/fused_allreduce_norm.h"

#include "kernels/torch/rms_norm_ops.h"
#include "parallel/side_stream.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <utility>

#if LOOM_PARALLEL_TORCH_CUDA
#include "kernels/cuda/fused_add_rms_norm.cuh"  // the bfloat16 kernels
#include "kernels/cuda/rms_norm.cuh"            // the float32 one

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loom::parallel {
namespace {

at::Tensor padRows(const at::Tensor& t, int64_t rows) {
  return t.size(0) == rows ? t : at::constant_pad_nd(t, {0, 0, 0, rows - t.size(0)});
}

#if LOOM_PARALLEL_TORCH_CUDA
/// addRmsNorm on CUDA: one kernel reads the float32 sums and writes both outputs
/// already rounded to `dtype` (kernels/cuda), on the current stream.
std::pair<at::Tensor, at::Tensor> addRmsNormCuda(const at::Tensor& sum, const at::Tensor& residual, const at::Tensor& w,
                                                 double eps, at::ScalarType dtype) {
  LOOM_CHECK_INPUT(residual.device() == sum.device() && w.device() == sum.device(),
                   "fused all-reduce + add + RMSNorm: x is on ", sum.device(), " but residual is on ",
                   residual.device(), " and weight on ", w.device(), "; move them to one device");
  const c10::cuda::CUDAGuard guard(sum.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(sum.device().index()).stream();
  const at::Tensor res = residual.to(dtype).contiguous();
  const at::Tensor weight = w.contiguous();
  at::Tensor out = at::empty(sum.sizes(), res.options());
  at::Tensor residual_out = at::empty(sum.sizes(), res.options());
  const int64_t rows = sum.size(0);
  const int64_t cols = sum.size(1);
  if (dtype == at::kFloat) {
    kernels::cuda::fusedAddRmsNormForward(sum.data_ptr<float>(), res.data_ptr<float>(), weight.data_ptr<float>(),
                                          out.data_ptr<float>(), residual_out.data_ptr<float>(), nullptr, rows, cols,
                                          eps, stream);
  } else {
    const auto bf16 = [](const at::Tensor& t) { return reinterpret_cast<__nv_bfloat16*>(t.data_ptr<at::BFloat16>()); };
    kernels::cuda::fusedAddRmsNormForward(sum.data_ptr<float>(), bf16(res), weight.data_ptr<float>(), bf16(out),
                                          bf16(residual_out), nullptr, rows, cols, eps, stream);
  }
  return {out, residual_out};
}
#endif

/// (out, residual_out) in `dtype` from the float32 sums `sum` [rows, hidden]:
/// computed in float32 and rounded once.
std::pair<at::Tensor, at::Tensor> addRmsNorm(const at::Tensor& sum, const at::Tensor& residual, const at::Tensor& w,
                                             double eps, at::ScalarType dtype) {
#if LOOM_PARALLEL_TORCH_CUDA
  if (sum.is_cuda()) return addRmsNormCuda(sum, residual, w, eps, dtype);
#endif
  const auto [out, residual_out] = kernels::fusedAddRmsNorm(sum, residual.to(at::kFloat), w, eps);
  return {out.to(dtype), residual_out.to(dtype)};
}

}  // namespace

at::Tensor tokenShard(const at::Tensor& full, int ranks, int rank) {
  LOOM_CHECK_INPUT(full.dim() == 2 && ranks >= 1 && rank >= 0 && rank < ranks, "tokenShard: ", full.sizes(), ", rank ",
                   rank, " of ", ranks);
  const int64_t s = shardRows(full.size(0), ranks);
  return padRows(full, ranks * s).narrow(0, rank * s, s).clone();
}

FusedNormOutput fusedAllReduceAddRmsNorm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                         double eps, dist::Communicator& group, FusedNormPath path) {
  LOOM_CHECK_INPUT(x.dim() == 2 && weight.dim() == 1 && weight.size(0) == x.size(1),
                   "fused all-reduce + add + RMSNorm: x ", x.sizes(), " must be [tokens, hidden] and weight ",
                   weight.sizes(), " [hidden]");
  LOOM_CHECK_INPUT(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
                   "fused all-reduce + add + RMSNorm: x is ", x.scalar_type(), "; float32 and bfloat16 are supported");
  c10::NoGradGuard no_grad;
  const CurrentStreamOrder order(group, x.device());  // NCCL reads what this thread's stream makes below
  const int ranks = group.size();
  const int64_t tokens = x.size(0);
  const at::Tensor w = weight.to(at::kFloat);
  if (path == FusedNormPath::kAllReduce) {
    LOOM_CHECK_INPUT(residual.sizes() == x.sizes(), "fused all-reduce + add + RMSNorm: residual ", residual.sizes(),
                     " must match x ", x.sizes());
    // A copy even for float32 x: the all-reduce works in place and x is the caller's.
    at::Tensor sum = x.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
    if (ranks > 1) group.allReduce(sum, dist::ReduceOp::kSum)->wait();
    const auto [out, residual_out] = addRmsNorm(sum, residual, w, eps, x.scalar_type());
    return {out, residual_out};
  }
  const int64_t s = shardRows(tokens, ranks);
  LOOM_CHECK_INPUT(residual.dim() == 2 && residual.size(0) == s && residual.size(1) == x.size(1),
                   "fused all-reduce + add + RMSNorm: the residual shard is ", residual.sizes(), " but rank ",
                   group.rank(), " of ", ranks, " holds [", s, ", ", x.size(1), "] (tokenShard)");
  const at::Tensor shard = reduceScatterRows(group, x.to(at::kFloat));
  // Rounded before the gather, so every rank receives the same bytes.
  const auto [mine, residual_out] = addRmsNorm(shard, residual, w, eps, x.scalar_type());
  return {gatherRows(group, mine, tokens), residual_out};
}

at::Tensor reduceScatterRows(dist::Communicator& group, const at::Tensor& full) {
  const int ranks = group.size();
  if (ranks == 1) return full.clone(at::MemoryFormat::Contiguous);
  const int64_t s = shardRows(full.size(0), ranks);
  const at::Tensor padded = padRows(full, ranks * s).contiguous();
  at::Tensor shard = at::empty({s, full.size(1)}, full.options());
  at::Tensor flat = shard.view({-1});
  group.reduceScatter(padded.view({-1}), flat, dist::ReduceOp::kSum)->wait();
  return shard;
}

at::Tensor gatherRows(dist::Communicator& group, const at::Tensor& shard, int64_t tokens) {
  const int ranks = group.size();
  if (ranks == 1) return shard.narrow(0, 0, tokens).clone();
  const at::Tensor mine = shard.contiguous();
  at::Tensor gathered = at::empty({ranks * mine.size(0), mine.size(1)}, mine.options());
  at::Tensor flat = gathered.view({-1});
  group.allGather(mine.view({-1}), flat)->wait();
  return gathered.narrow(0, 0, tokens);
}

}  // namespace loom::parallel
