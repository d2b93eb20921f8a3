#include "optim/parameter_optimizer.h"

#include "optim/grad_clip.h"
#include "parallel/sharded_parameters.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

namespace loom::optim {
namespace {

std::vector<at::Tensor> tensorsOf(const NamedTensors& named) {
  std::vector<at::Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}

/// The sums of squares of the tensors' gradients (0 without one), in double.
at::Tensor squaresOf(const std::vector<at::Tensor>& tensors) {
  at::Tensor squares = at::zeros({static_cast<int64_t>(tensors.size())}, at::kDouble);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor g = tensors[i].grad();
    if (g.defined()) squares[static_cast<int64_t>(i)] = g.to(at::kDouble).pow(2).sum();
  }
  return squares;
}

std::vector<double> toVector(const at::Tensor& t) {
  const double* data = t.data_ptr<double>();
  return {data, data + t.numel()};
}

void scaleGradientsOf(const std::vector<at::Tensor>& tensors, double coef) {
  for (const at::Tensor& t : tensors) {
    at::Tensor g = t.grad();
    if (g.defined()) g.mul_(coef);
  }
}

class ReplicatedAdamW final : public ParameterOptimizer {
 public:
  ReplicatedAdamW(NamedTensors params, const OptimizerOptions& opts)
      : params_(tensorsOf(params)), adam_(std::move(params), opts) {}

  double clipGradNorm(double max_norm) override { return optim::clipGradNorm(params_, max_norm); }
  std::vector<double> gradSquares() override { return toVector(squaresOf(params_)); }
  void scaleGradients(double coef) override { scaleGradientsOf(params_, coef); }
  void step(double lr) override { adam_.step(lr); }
  NamedTensors stateTensors() override { return adam_.stateTensors(); }
  NamedTensors localState() override { return adam_.stateTensors(); }
  void loadState(const NamedTensors& state, int64_t step_count) override { adam_.loadState(state, step_count); }
  int64_t stepCount() const override { return adam_.stepCount(); }
  int64_t stateBytes() const override { return adam_.stateBytes(); }

 private:
  std::vector<at::Tensor> params_;
  AdamW adam_;
};

// AdamW over this rank's chunks: each chunk is a contiguous view of the master
// segment whose .grad is the matching view of the reduce-scattered gradient,
// and keeps its parameter's weight-decay rule (a chunk of a matrix decays).
class ShardedAdamW final : public ParameterOptimizer {
 public:
  ShardedAdamW(NamedTensors params, const parallel::GradientReducer& reducer, const OptimizerOptions& opts)
      : names_(namesOf(params)), shards_(reducer), comm_(reducer.comm()), adam_(chunks(params), opts) {}

  double clipGradNorm(double max_norm) override {
    at::Tensor sum_sq = at::zeros({1}, at::kDouble);
    for (const at::Tensor& chunk : chunk_tensors_) sum_sq += chunk.grad().to(at::kDouble).pow(2).sum();
    comm_.allReduce(sum_sq, dist::ReduceOp::kSum)->wait();
    const double norm = std::sqrt(sum_sq.item<double>());
    const double coef = max_norm / (norm + 1e-6);
    if (max_norm > 0 && coef < 1.0) {
      for (const at::Tensor& chunk : chunk_tensors_) chunk.grad().mul_(coef);
    }
    return norm;
  }

  std::vector<double> gradSquares() override {
    at::Tensor squares = squaresOf(chunk_tensors_);
    comm_.allReduce(squares, dist::ReduceOp::kSum)->wait();
    return toVector(squares);
  }

  void scaleGradients(double coef) override { scaleGradientsOf(chunk_tensors_, coef); }

  void step(double lr) override {
    adam_.step(lr);
    shards_.gatherIntoParameters();
  }

  NamedTensors stateTensors() override {
    std::map<std::string, at::Tensor> by_name;
    for (const auto& [name, t] : adam_.stateTensors()) by_name.emplace(name, t);
    NamedTensors full;
    for (const char* prefix : {"exp_avg.", "exp_avg_sq."}) {
      std::vector<at::Tensor> chunks;
      for (const std::string& name : names_) chunks.push_back(by_name.at(prefix + name));
      const std::vector<at::Tensor> gathered = shards_.gatherFull(chunks);
      for (size_t i = 0; i < names_.size(); ++i) full.emplace_back(prefix + names_[i], gathered[i]);
    }
    return full;
  }

  void loadState(const NamedTensors& state, int64_t step_count) override {
    std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
    NamedTensors mine;
    for (const char* prefix : {"exp_avg.", "exp_avg_sq."}) {
      for (size_t i = 0; i < names_.size(); ++i) {
        const auto it = by_name.find(prefix + names_[i]);
        LOOM_CHECK_INPUT(it != by_name.end(), "optimizer state lacks ", prefix, names_[i],
                         ": the checkpoint belongs to a different model");
        mine.emplace_back(prefix + names_[i],
                          shards_.slice(static_cast<int>(i), it->second).view(chunk_tensors_[i].sizes()));
      }
    }
    adam_.loadState(mine, step_count);
  }

  NamedTensors localState() override { return adam_.stateTensors(); }
  int64_t stepCount() const override { return adam_.stepCount(); }
  int64_t stateBytes() const override { return adam_.stateBytes(); }

 private:
  static std::vector<std::string> namesOf(const NamedTensors& params) {
    std::vector<std::string> names;
    for (const auto& [name, t] : params) names.push_back(name);
    return names;
  }

  // The chunk tensors stand in for the parameters (AdamW decays dim >= 2 tensors,
  // so each chunk is viewed with its parameter's rank: [1, chunk] for matrices).
  NamedTensors chunks(const NamedTensors& params) {
    NamedTensors out;
    for (size_t i = 0; i < params.size(); ++i) {
      at::Tensor chunk = shards_.masterChunk(static_cast<int>(i));
      at::Tensor grad = shards_.gradChunk(static_cast<int>(i));
      if (params[i].second.dim() >= 2) {
        chunk = chunk.unsqueeze(0);
        grad = grad.unsqueeze(0);
      }
      chunk.mutable_grad() = grad;
      chunk_tensors_.push_back(chunk);
      out.emplace_back(params[i].first, chunk);
    }
    return out;
  }

  std::vector<std::string> names_;
  parallel::ShardedParameters shards_;
  dist::Communicator& comm_;
  std::vector<at::Tensor> chunk_tensors_;
  AdamW adam_;
};

}  // namespace

NamedTensors assembleShardedState(const NamedTensors& params, const std::vector<NamedTensors>& shards) {
  LOOM_CHECK_INPUT(!shards.empty(), "assembleShardedState: no shards");
  const int64_t world = static_cast<int64_t>(shards.size());
  std::vector<std::map<std::string, at::Tensor>> by_name;
  for (const NamedTensors& shard : shards) by_name.emplace_back(shard.begin(), shard.end());
  NamedTensors full;
  for (const char* prefix : {"exp_avg.", "exp_avg_sq."}) {
    for (const auto& [name, param] : params) {
      const int64_t numel = param.numel();
      const int64_t chunk = (numel + world - 1) / world;
      std::vector<at::Tensor> pieces;
      for (int64_t r = 0; r < world; ++r) {
        const auto it = by_name[static_cast<size_t>(r)].find(prefix + name);
        LOOM_CHECK_INPUT(it != by_name[static_cast<size_t>(r)].end() && it->second.numel() == chunk,
                         "optimizer shard of rank ", r, " of ", world, " lacks ", prefix, name, " with ", chunk,
                         " elements");
        pieces.push_back(it->second.reshape({-1}));
      }
      full.emplace_back(prefix + name, at::cat(pieces).narrow(0, 0, numel).view(param.sizes()).clone());
    }
  }
  return full;
}

std::unique_ptr<ParameterOptimizer> makeReplicatedAdamW(NamedTensors params, const OptimizerOptions& opts) {
  return std::make_unique<ReplicatedAdamW>(std::move(params), opts);
}

std::unique_ptr<ParameterOptimizer> makeShardedAdamW(NamedTensors params, const parallel::GradientReducer& reducer,
                                                     const OptimizerOptions& opts) {
  return std::make_unique<ShardedAdamW>(std::move(params), reducer, opts);
}

}  // namespace loom::optim
