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
#include <c10/util/accumulate.h>

#include <algorithm>
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
  owned_data_comm_ =
      position.size() > 1 ? world_comm_->split(position) : dist::makeSelfCommunicator({world_comm_->options().timeout});
  comm_ = owned_data_comm_.get();
  tensor_parallel_ = std::make_unique<parallel::TensorParallel>(
      *owned_tp_comm_, parallel::TensorParallelOptions{par.sequence_parallel, par.token_split_min_tokens});
}

void Trainer::shardModel() {
  const int tp = tensor_parallel_->size();
  const checkpoint::NamedTensors shards = model::shardTensors(model_->namedParameters(), tp, tensor_parallel_->rank());
  model_ = model::Llama(opts_.job.model, tp);
  c10::NoGradGuard no_grad;
  const checkpoint::NamedTensors params = model_->namedParameters();
  LOOM_CHECK(params.size() == shards.size(), "tensor parallel: the sharded model has ", params.size(),
             " parameters but sharding gave ", shards.size());
  for (size_t i = 0; i < params.size(); ++i) {
    LOOM_CHECK(params[i].first == shards[i].first && params[i].second.sizes() == shards[i].second.sizes(),
               "tensor parallel: parameter ", i, " is ", params[i].first, " ", params[i].second.sizes(),
               " in the sharded model but ", shards[i].first, " ", shards[i].second.sizes(), " after sharding");
    params[i].second.copy_(shards[i].second);
  }
}

checkpoint::NamedTensors Trainer::wholeTensors(const checkpoint::NamedTensors& local) {
  return tensor_parallel_ ? model::gatherTensors(local, tensor_parallel_->group()) : local;
}

checkpoint::NamedTensors Trainer::localShards(const checkpoint::NamedTensors& whole) const {
  return tensor_parallel_ ? model::shardTensors(whole, tensor_parallel_->size(), tensor_parallel_->rank()) : whole;
}

namespace {

// The outer optimizers keep their state in flat buffers over every parameter
// (optim/outer/flat_parameters.h); a range names a part of them, cut at
// parameter boundaries (a streaming fragment).
bool isFlatBuffer(const std::string& name) {
  return name == "outer.global" || name == "outer.momentum" || name == "outer.pending" || name == "outer.sent";
}
bool isFlatRange(const std::string& name) {
  return name == "outer.pending_range" || name == "outer.sent_range";
}

/// Named views of `flat`, one per entry of `shapes`, in order.
checkpoint::NamedTensors splitFlat(const at::Tensor& flat,
                                   const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes) {
  checkpoint::NamedTensors pieces;
  int64_t offset = 0;
  for (const auto& [name, sizes] : shapes) {
    const int64_t numel = c10::multiply_integers(sizes);
    pieces.emplace_back(name, flat.narrow(0, offset, numel).view(sizes));
    offset += numel;
  }
  LOOM_CHECK(offset == flat.numel(), "outer state: a flat buffer of ", flat.numel(), " elements for ", offset,
             " parameter elements");
  return pieces;
}

at::Tensor joinFlat(const checkpoint::NamedTensors& pieces) {
  std::vector<at::Tensor> flat;
  for (const auto& [name, t] : pieces) flat.push_back(t.reshape({-1}));
  return at::cat(flat);
}

/// Where each parameter starts in a flat vector of `shapes`; back() is its size.
std::vector<int64_t> offsetsOf(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes) {
  std::vector<int64_t> offsets{0};
  for (const auto& [name, sizes] : shapes) offsets.push_back(offsets.back() + c10::multiply_integers(sizes));
  return offsets;
}

/// A range {begin, end} over the `from` layout's flat vector, cut at parameter
/// boundaries, as the same parameters' range over the `to` layout's.
at::Tensor convertRange(const at::Tensor& range, const std::vector<int64_t>& from, const std::vector<int64_t>& to) {
  const auto index = [&](int64_t offset) {
    const auto it = std::find(from.begin(), from.end(), offset);
    LOOM_CHECK_INPUT(it != from.end(), "outer state: range bound ", offset,
                     " is not a parameter boundary; the checkpoint belongs to another model");
    return to[static_cast<size_t>(it - from.begin())];
  };
  const at::Tensor r = range.to(at::kLong).reshape({-1});
  return at::tensor({index(r[0].item<int64_t>()), index(r[1].item<int64_t>())}, at::kLong);
}

/// The outer state with its flat buffers and ranges moved from the `from`
/// layout (parameter shapes) to the `to` layout; convert(pieces) maps each
/// buffer's per-parameter pieces.
template <typename Convert>
checkpoint::NamedTensors convertOuterState(const checkpoint::NamedTensors& state,
                                           const std::vector<std::pair<std::string, std::vector<int64_t>>>& from,
                                           const std::vector<std::pair<std::string, std::vector<int64_t>>>& to,
                                           const Convert& convert) {
  const std::vector<int64_t> from_offsets = offsetsOf(from), to_offsets = offsetsOf(to);
  checkpoint::NamedTensors out;
  for (const auto& [name, t] : state) {
    if (isFlatBuffer(name)) {
      out.emplace_back(name, joinFlat(convert(splitFlat(t.reshape({-1}), from))));
    } else if (isFlatRange(name)) {
      out.emplace_back(name, convertRange(t, from_offsets, to_offsets));
    } else {
      out.emplace_back(name, t);
    }
  }
  return out;
}

}  // namespace

std::vector<int64_t> Trainer::wholeParameterSizes() const {
  std::vector<int64_t> sizes;
  if (!tensor_parallel_) return sizes;
  for (const auto& [name, p] : model_->namedParameters()) {
    sizes.push_back(p.numel() * (model::tensorParallelDim(name) >= 0 ? tensor_parallel_->size() : 1));
  }
  return sizes;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Trainer::parameterShapes(bool whole) const {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [name, p] : model_->namedParameters()) {
    std::vector<int64_t> sizes = p.sizes().vec();
    const int dim = model::tensorParallelDim(name);
    if (whole && dim >= 0) sizes[static_cast<size_t>(dim)] *= tensor_parallel_->size();
    shapes.emplace_back(name, std::move(sizes));
  }
  return shapes;
}

checkpoint::NamedTensors Trainer::wholeOuterState(const checkpoint::NamedTensors& local) {
  if (!tensor_parallel_) return local;
  return convertOuterState(
      local, parameterShapes(false), parameterShapes(true),
      [&](const checkpoint::NamedTensors& pieces) { return model::gatherTensors(pieces, tensor_parallel_->group()); });
}

checkpoint::NamedTensors Trainer::localOuterState(const checkpoint::NamedTensors& whole) const {
  if (!tensor_parallel_) return whole;
  return convertOuterState(whole, parameterShapes(true), parameterShapes(false),
                           [&](const checkpoint::NamedTensors& pieces) { return localShards(pieces); });
}

double Trainer::clipGradNorm(double max_norm) {
  if (!tensor_parallel_) return optimizer_->clipGradNorm(max_norm);
  // Shards hold disjoint parts of their tensors (summed over the group);
  // replicated tensors are whole on every rank (counted once).
  const std::vector<double> squares = optimizer_->gradSquares();
  const checkpoint::NamedTensors params = model_->namedParameters();
  at::Tensor sums = at::zeros({2}, at::kDouble);
  for (size_t i = 0; i < params.size(); ++i) {
    sums[model::tensorParallelDim(params[i].first) >= 0 ? 0 : 1] += squares[i];
  }
  at::Tensor sharded = sums.narrow(0, 0, 1).clone();
  tensor_parallel_->run(
      [&] {
        tensor_parallel_->group().allReduce(sharded, dist::ReduceOp::kSum)->wait();
        return sharded;
      },
      {sharded});
  const double norm = std::sqrt(sharded.item<double>() + sums[1].item<double>());
  const double coef = max_norm / (norm + 1e-6);
  if (max_norm > 0 && coef < 1.0) optimizer_->scaleGradients(coef);
  return norm;
}

at::Tensor Trainer::forward(const at::Tensor& tokens) {
  return tensor_parallel_ ? model_->forward(tokens, *tensor_parallel_) : model_->forward(tokens);
}

double Trainer::tpExposedMs() const { return tensor_parallel_ ? tensor_parallel_->stream().stats().exposed_ms : 0; }

bool Trainer::leads() const {
  return comm_->rank() == 0 && (!tensor_parallel_ || tensor_parallel_->rank() == 0);
}

}  // namespace loom::train
