// What the trainer steps every step: clip the global gradient norm, then update
// the parameters. Two implementations of AdamW behind one seam:
//   replicated: every rank holds all optimizer state and updates all parameters
//               (plain data parallelism; gradients were all-reduced);
//   sharded:    ZeRO-1: rank r holds the state of its chunks only (about 1/W of
//               it), updates them from its reduce-scattered gradient, and an
//               all-gather rebuilds the parameters (parallel/sharded_parameters.h).
// Both give the same parameters as a single-rank AdamW over the same global
// batch, up to float summation order.
#pragma once

#include "optim/adamw.h"
#include "parallel/gradient_reducer.h"
#include "runtime/config/options.h"

#include <memory>
#include <vector>

namespace loom::optim {

class ParameterOptimizer {
 public:
  virtual ~ParameterOptimizer() = default;

  /// Scales gradients so their global L2 norm is at most `max_norm` (<= 0: only
  /// measure); returns the norm before clipping. Collective when sharded.
  virtual double clipGradNorm(double max_norm) = 0;
  /// Per parameter (in construction order): the sum of squares of its gradient
  /// over the optimizer's ranks (collective when sharded), for layouts whose
  /// parameters are also split elsewhere (tensor parallelism) and that combine
  /// the global norm themselves.
  virtual std::vector<double> gradSquares() = 0;
  /// Multiplies every gradient this rank holds by `coef` (clipping by a norm
  /// combined from gradSquares()).
  virtual void scaleGradients(double coef) = 0;
  /// One AdamW update with learning rate `lr`. Collective when sharded.
  virtual void step(double lr) = 0;

  /// The full optimizer state under the parameters' names ("exp_avg.<name>",
  /// "exp_avg_sq.<name>"), whatever the sharding: checkpoints do not depend on
  /// the world size. Collective when sharded.
  virtual NamedTensors stateTensors() = 0;
  virtual void loadState(const NamedTensors& state, int64_t step_count) = 0;
  /// The optimizer state this rank holds, without communication: the full
  /// state when replicated; when sharded, this rank's chunks under the same
  /// names (each chunk = ceil(numel / world) elements, the tail zero padded).
  /// Live tensors: copy them to keep a snapshot.
  virtual NamedTensors localState() = 0;
  virtual int64_t stepCount() const = 0;
  /// Bytes of optimizer state this rank holds.
  virtual int64_t stateBytes() const = 0;
};

/// The full state from the localState() of every rank of a sharded optimizer
/// over `world` = shards.size() ranks (shards[r] is rank r's), for `params`
/// (names and shapes): the inverse of the sharding, without communication.
/// Throws InputError when a shard lacks a tensor or has the wrong size.
NamedTensors assembleShardedState(const NamedTensors& params, const std::vector<NamedTensors>& shards);

std::unique_ptr<ParameterOptimizer> makeReplicatedAdamW(NamedTensors params, const OptimizerOptions& opts);

/// REQUIRES: `reducer` is sharded, was built over `params` (same order) and outlives the optimizer.
std::unique_ptr<ParameterOptimizer> makeShardedAdamW(NamedTensors params, const parallel::GradientReducer& reducer,
                                                     const OptimizerOptions& opts);

}  // namespace loom::optim
