// One rank's part of an HDP step (issue 6; parallel/hdp_plan.h, docs/hdp.md):
// forward and backward of every placement of the plan that includes this rank.
// A long sequence's context-parallel group runs the model with ring attention
// over the group's cached communicator, this rank holding its zigzag share;
// groups run in wave order. The rank's short sequences (of every wave) run
// afterwards, repacked longest first into as few rows of at most C tokens as
// fit, each sequence causal within itself (the planner puts a rank's groups
// before its short sequences, so this keeps every group's members in step). Each rank's loss is the SUM of its tokens'
// losses, so after summing gradients and token counts over the pool (one
// reduction per step, by the caller) and dividing, the gradient is the global
// per-token mean's, whatever the plan (parallel_elastic.md §2.4).
#pragma once

#include "model/llama.h"
#include "parallel/group_cache.h"
#include "parallel/hdp_plan.h"
#include "parallel/static_plan.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom::train {

struct HdpRankResult {
  double loss_sum = 0;       ///< sum of this rank's token losses
  int64_t tokens = 0;        ///< tokens whose loss this rank computed
  int64_t forwards = 0;      ///< model forward passes run (0: idle this step)
  int64_t sequences = 0;     ///< sequences this rank leads (a group's first rank, or alone)
  double sequence_sum = 0;   ///< the sum of their indices (every sequence once over the pool)
  double tp_exposed_forward_ms = 0;  ///< with tensor parallelism: time forwards waited for its stream
};

struct StepOptions {
  /// Gradients are of loss_scale times the summed token losses (the trainer
  /// passes 1 / the step's tokens).
  double loss_scale = 1.0;
  /// With tensor parallelism: the group the model's shards run over; the
  /// plan and its context-parallel groups span the ranks at this rank's
  /// position in their groups.
  parallel::TensorParallel* tp = nullptr;
};

/// `sequences[i]`: int64 [L_i + 1] tokens of plan sequence i (inputs the
/// first L_i, targets the last L_i). Gradients (StepOptions) accumulate into
/// the model's parameters. Collective over the groups of the placements this
/// rank is in.
HdpRankResult runHdpStep(model::LlamaImpl& model, const parallel::HdpPlan& plan,
                         const std::vector<at::Tensor>& sequences, parallel::GroupCache& groups,
                         const StepOptions& step = {});

/// The static dp x cp baseline (parallel/static_plan.h): every row of the
/// plan whose group holds this rank runs with this rank's zigzag share of the
/// packed row (each sequence its own document, positions restarting).
HdpRankResult runStaticStep(model::LlamaImpl& model, const parallel::StaticPlan& plan,
                            const std::vector<at::Tensor>& sequences, parallel::GroupCache& groups,
                            const StepOptions& step = {});

}  // namespace loom::train
