// The end of a tensor-parallel sublayer (parallel/fused_allreduce_norm.h) as torch ops:
//
//   out, residual = torch.ops.loom.fused_allreduce_add_rms_norm(x, residual, w, eps, tp, "all_reduce")
//   shard = torch.ops.loom.token_shard(residual, tp.size(), tp.rank())
//   out, shard = torch.ops.loom.fused_allreduce_add_rms_norm(x, shard, w, eps, tp, "reduce_scatter")
//
// `tp` is a torch.classes.loom.Communicator; the op is a collective over it, so every
// rank of it calls the op with the same shapes, dtype and path. Forward-only, as
// TokenWeave's op: it runs under no_grad and returns tensors without grad_fn, whether
// or not its inputs require grad. Errors (InputError, Python ValueError): a path
// other than "all_reduce" / "reduce_scatter", and the shapes and dtypes
// fusedAllReduceAddRmsNorm rejects.
//
// Compiled only into libloom_torch.so (loom/CMakeLists.txt), after
// parallel/torch/register.cpp, whose Communicator class must be registered first.
#include "parallel/fused_allreduce_norm.h"
#include "parallel/torch/communicator_class.h"
#include "runtime/core/error.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <string>
#include <tuple>

namespace loom::parallel {
namespace {

FusedNormPath parsePath(const std::string& path) {
  if (path == "all_reduce") return FusedNormPath::kAllReduce;
  if (path == "reduce_scatter") return FusedNormPath::kReduceScatter;
  LOOM_THROW(InputError, "fused_allreduce_add_rms_norm: path \"", path, "\" must be one of all_reduce, reduce_scatter");
}

std::tuple<at::Tensor, at::Tensor> fusedAllReduceAddRmsNormOp(const at::Tensor& x, const at::Tensor& residual,
                                                              const at::Tensor& weight, double eps,
                                                              const c10::intrusive_ptr<CommunicatorClass>& group,
                                                              const std::string& path) {
  FusedNormOutput result = fusedAllReduceAddRmsNorm(x, residual, weight, eps, group->comm(), parsePath(path));
  return {std::move(result.out), std::move(result.residual)};
}

at::Tensor tokenShardOp(const at::Tensor& full, int64_t ranks, int64_t rank) {
  return tokenShard(full, static_cast<int>(ranks), static_cast<int>(rank));
}

}  // namespace
}  // namespace loom::parallel

TORCH_LIBRARY_FRAGMENT(loom, m) {
  m.def(
      "fused_allreduce_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps, "
      "__torch__.torch.classes.loom.Communicator group, str path) -> (Tensor, Tensor)",
      &loom::parallel::fusedAllReduceAddRmsNormOp);
  m.def("token_shard(Tensor full, int ranks, int rank) -> Tensor", &loom::parallel::tokenShardOp);
}
