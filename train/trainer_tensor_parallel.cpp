// The Trainer's tensor parallelism (parallel.tp > 1; docs/tensor_parallel.md):
// the mesh, the model's shards, whole tensors for checkpoints and the
// gradient norm over the shards.
//
// Ranks form groups of tp consecutive ranks; rank r sits at position r % tp of
// group r / tp. comm_ becomes the data-parallel world of ranks at the same
// position, so the loader, the gradient reducer, validation and context
// parallelism (HDP included) run over it as without tensor parallelism, and
// the ranks of a group see the same data.
#include "train/trainer.h"

#include "model/tensor_parallel_shards.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace loom::train {

void Trainer::formTensorParallel() {
  const ParallelOptions& par = opts_.job.parallel;
  const int tp = static_cast<int>(par.tp);
  const int world = world_comm_->size();
  const int rank = world_comm_->rank();
  // config::validate checked that tp divides the world; every rank splits its group, then its position's world.
  LOOM_CHECK(world % tp == 0, "parallel.tp ", tp, " does not divide the world size ", world);
  std::vector<int> group, position;
  for (int i = 0; i < tp; ++i) group.push_back(rank / tp * tp + i);
  for (int r = rank % tp; r < world; r += tp) position.push_back(r);
  owned_tp_comm_ = world_comm_->split(group);
  owned_data_comm_ = position.size() > 1 ? world_comm_->split(position)
                                         : dist::makeSelfCommunicator({world_comm_->options().timeout});
  comm_ = owned_data_comm_.get();
  tensor_parallel_ = std::make_unique<parallel::TensorParallel>(
      *owned_tp_comm_, parallel::TensorParallelOptions{par.sequence_parallel, par.token_split_min_tokens});
}

void Trainer::shardModel() {
  const int tp = tensor_parallel_->size();
  const checkpoint::NamedTensors shards =
      model::shardTensors(model_->namedParameters(), tp, tensor_parallel_->rank());
  model_ = model::Llama(opts_.job.model, tp);
  c10::NoGradGuard no_grad;
  const checkpoint::NamedTensors params = model_->namedParameters();
  for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(shards[i].second);
}

checkpoint::NamedTensors Trainer::wholeTensors(const checkpoint::NamedTensors& local) {
  return tensor_parallel_ ? model::gatherTensors(local, tensor_parallel_->group()) : local;
}

checkpoint::NamedTensors Trainer::localShards(const checkpoint::NamedTensors& whole) const {
  return tensor_parallel_ ? model::shardTensors(whole, tensor_parallel_->size(), tensor_parallel_->rank()) : whole;
}

double Trainer::clipGradNorm(double max_norm) {
  if (!tensor_parallel_) return optimizer_->clipGradNorm(max_norm);
  // Shards hold disjoint parts of their tensors; replicated tensors are whole on every rank.
  at::Tensor sums = at::zeros({2}, at::kDouble);
  std::vector<at::Tensor> grads;
  for (const auto& [name, p] : model_->namedParameters()) {
    const at::Tensor g = p.grad();
    if (!g.defined()) continue;
    grads.push_back(p);
    sums[model::tensorParallelDim(name) >= 0 ? 0 : 1] += g.to(at::kDouble).pow(2).sum();
  }
  at::Tensor sharded = sums.narrow(0, 0, 1).clone();
  tensor_parallel_->stream().run([&] { tensor_parallel_->group().allReduce(sharded, dist::ReduceOp::kSum)->wait(); });
  const double norm = std::sqrt(sharded.item<double>() + sums[1].item<double>());
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1.0) {
    for (const at::Tensor& p : grads) p.grad().mul_(coef);
  }
  return norm;
}

at::Tensor Trainer::forward(const at::Tensor& tokens) {
  return tensor_parallel_ ? model_->forward(tokens, *tensor_parallel_) : model_->forward(tokens);
}

bool Trainer::leads() const { return comm_->rank() == 0 && (!tensor_parallel_ || tensor_parallel_->rank() == 0); }

}  // namespace loom::train
