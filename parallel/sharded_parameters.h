// ZeRO-1's parameter side (bucket_plan.h has the layout). Each rank keeps a
// master copy of its own chunks of every parameter (what its share of the
// optimizer updates); after a step one all-gather per bucket rebuilds every
// parameter on every rank. The same gather turns per-chunk optimizer moments
// into full per-parameter tensors for checkpoints, and slice() does the
// reverse, so checkpoints do not depend on the world size.
#pragma once

#include "parallel/gradient_reducer.h"

#include <ATen/core/Tensor.h>

#include <vector>

namespace loom::parallel {

class ShardedParameters {
 public:
  /// REQUIRES: `reducer` is sharded and outlives this object.
  explicit ShardedParameters(const GradientReducer& reducer);

  /// This rank's chunk of parameter `param` (a contiguous view of the master
  /// segment; chunk elements, the tail beyond the parameter padded with zeros).
  at::Tensor masterChunk(int param) const;
  /// This rank's reduced gradient chunk of `param` (a view of the reducer's shard gradient).
  at::Tensor gradChunk(int param) const;

  /// All-gathers the master chunks and copies them into the parameters.
  void gatherIntoParameters();
  /// Full parameter-shaped tensors from per-parameter chunks (one per parameter,
  /// each `chunk` elements, e.g. an optimizer moment). Collective.
  std::vector<at::Tensor> gatherFull(const std::vector<at::Tensor>& chunks) const;
  /// This rank's chunk (zero padded) of a full parameter-shaped tensor.
  at::Tensor slice(int param, const at::Tensor& full) const;

 private:
  std::vector<at::Tensor> gatherSegments(const std::vector<at::Tensor>& segments) const;

  const GradientReducer& reducer_;
  std::vector<at::Tensor> master_;  // per bucket: this rank's segment of parameter values
};

}  // namespace loom::parallel
