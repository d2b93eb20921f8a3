#include "parallel/fused_allreduce_norm.h"

#include "kernels/torch/rms_norm_ops.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace loom::parallel {
namespace {

int64_t shardRows(int64_t tokens, int ranks) { return (tokens + ranks - 1) / ranks; }

at::Tensor padRows(const at::Tensor& t, int64_t rows) {
  return t.size(0) == rows ? t : at::constant_pad_nd(t, {0, 0, 0, rows - t.size(0)});
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
  const int ranks = group.size();
  const int64_t tokens = x.size(0);
  const at::Tensor w = weight.to(at::kFloat);
  if (path == FusedNormPath::kAllReduce) {
    LOOM_CHECK_INPUT(residual.sizes() == x.sizes(), "fused all-reduce + add + RMSNorm: residual ", residual.sizes(),
                     " must match x ", x.sizes());
    // A copy even for float32 x: the all-reduce works in place and x is the caller's.
    at::Tensor sum = x.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
    if (ranks > 1) group.allReduce(sum, dist::ReduceOp::kSum)->wait();
    const auto [out, residual_out] = kernels::fusedAddRmsNorm(sum, residual.to(at::kFloat), w, eps);
    return {out.to(x.scalar_type()), residual_out.to(x.scalar_type())};
  }
  const int64_t s = shardRows(tokens, ranks);
  LOOM_CHECK_INPUT(residual.dim() == 2 && residual.size(0) == s && residual.size(1) == x.size(1),
                   "fused all-reduce + add + RMSNorm: the residual shard is ", residual.sizes(), " but rank ",
                   group.rank(), " of ", ranks, " holds [", s, ", ", x.size(1), "] (tokenShard)");
  const at::Tensor padded = padRows(x.to(at::kFloat), ranks * s).contiguous();
  at::Tensor shard = at::empty({s, x.size(1)}, at::kFloat);
  if (ranks > 1) {
    at::Tensor flat_shard = shard.view({-1});
    group.reduceScatter(padded.view({-1}), flat_shard, dist::ReduceOp::kSum)->wait();
  } else {
    shard.copy_(padded);
  }
  const auto [normed, residual_out] = kernels::fusedAddRmsNorm(shard, residual.to(at::kFloat), w, eps);
  // Rounded before the gather, so every rank receives the same bytes.
  const at::Tensor mine = normed.to(x.scalar_type()).contiguous();
  at::Tensor gathered = at::empty({ranks * s, x.size(1)}, mine.options());
  if (ranks > 1) {
    at::Tensor flat_gathered = gathered.view({-1});
    group.allGather(mine.view({-1}), flat_gathered)->wait();
  } else {
    gathered.copy_(mine);
  }
  return {gathered.narrow(0, 0, tokens), residual_out.to(x.scalar_type())};
}

}  // namespace loom::parallel
