// c10d's ProcessGroupGloo plus the one collective libtorch 1.13's Gloo backend
// lacks: reduce-scatter (internal to runtime/dist; needs USE_C10D_GLOO).
#pragma once

#include "runtime/dist/communicator.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

namespace loom::dist {

class GlooGroup final : public c10d::ProcessGroupGloo {
 public:
  using c10d::ProcessGroupGloo::ProcessGroupGloo;

  /// `output` (n elements) receives op over all ranks of `input`'s elements
  /// [rank * n, (rank + 1) * n); kAvg divides the sum by the group size.
  /// A ring: size-1 steps, each sending one n-element chunk to the next rank
  /// while receiving one from the previous, so every rank sends and receives
  /// (size-1)/size of the input, the bandwidth-optimal volume. It runs on the
  /// group's worker threads in issue order, like c10d's own collectives.
  /// REQUIRES: input contiguous, output.numel() * size == input.numel(), same dtype.
  c10::intrusive_ptr<c10d::Work> reduceScatterRing(const at::Tensor& input, const at::Tensor& output, ReduceOp op);

};

}  // namespace loom::dist
