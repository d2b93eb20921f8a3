#include "model/tensor_parallel_shards.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <array>

namespace loom::model {
namespace {

bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int tensorParallelDim(const std::string& name) {
  static constexpr std::array<const char*, 5> kRows = {"attn.wq.weight", "attn.wk.weight", "attn.wv.weight",
                                                       "mlp.w1.weight", "mlp.w3.weight"};
  static constexpr std::array<const char*, 2> kColumns = {"attn.wo.weight", "mlp.w2.weight"};
  for (const char* suffix : kRows) {
    if (endsWith(name, suffix)) return 0;
  }
  for (const char* suffix : kColumns) {
    if (endsWith(name, suffix)) return 1;
  }
  return -1;
}

NamedTensors shardTensors(const NamedTensors& whole, int tp, int rank) {
  LOOM_CHECK_INPUT(tp >= 1 && rank >= 0 && rank < tp, "tensor parallel: rank ", rank, " of ", tp);
  c10::NoGradGuard no_grad;
  NamedTensors out;
  out.reserve(whole.size());
  for (const auto& [name, t] : whole) {
    const int dim = tensorParallelDim(name);
    if (dim < 0) {
      out.emplace_back(name, t.clone());
      continue;
    }
    LOOM_CHECK_INPUT(t.dim() == 2 && t.size(dim) % tp == 0, "tensor parallel: ", name, " ", t.sizes(),
                     " cannot be split in ", tp, " along dimension ", dim);
    const int64_t slice = t.size(dim) / tp;
    out.emplace_back(name, t.narrow(dim, rank * slice, slice).clone(at::MemoryFormat::Contiguous));
  }
  return out;
}

NamedTensors gatherTensors(const NamedTensors& shards, dist::Communicator& group) {
  c10::NoGradGuard no_grad;
  const int64_t tp = group.size();
  NamedTensors out;
  out.reserve(shards.size());
  for (const auto& [name, t] : shards) {
    const int dim = tensorParallelDim(name);
    if (dim < 0 || tp == 1) {
      out.emplace_back(name, t.detach().clone());
      continue;
    }
    const at::Tensor mine = t.detach().contiguous();
    at::Tensor gathered = at::empty({tp * mine.numel()}, mine.options());
    group.allGather(mine.view({-1}), gathered)->wait();
    const at::Tensor stacked = gathered.view({tp, mine.size(0), mine.size(1)});
    out.emplace_back(name, dim == 0 ? stacked.reshape({tp * mine.size(0), mine.size(1)})
                                    : stacked.permute({1, 0, 2}).reshape({mine.size(0), tp * mine.size(1)}));
  }
  return out;
}

}  // namespace loom::model
