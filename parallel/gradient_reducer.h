// Data-parallel gradient reduction that overlaps backward (ARCHITECTURE.md §2,
// "Gradients").
//
// Gradients live in per-bucket buffers owned by the reducer (bucket_plan.h).
// Each parameter's AccumulateGrad node gets a post-hook; during the step's last
// backward, a bucket's reduction is launched as soon as all its gradients are
// final, while backward goes on computing the rest. Buckets are launched in
// plan order on every rank, so collectives match across ranks even when
// hooks fire in a different order. Earlier micro-batches of a step only
// accumulate: one reduction per step.
//
// Unsharded (plain data parallelism): each .grad is a view into its bucket's
// buffer (no copies) and the bucket is all-reduced (sum): afterwards every rank
// holds the sum over ranks. Sharded (ZeRO-1): gradients are ordinary tensors,
// copied into the bucket's rank-major layout when ready and reduce-scattered:
// afterwards rank r holds the summed gradient of its own chunks (shardGrad).
//
// The loss is already divided by the global token count, so a sum is the
// gradient of the global mean loss whatever the world size.
#pragma once

#include "parallel/bucket_plan.h"
#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace torch::autograd {
struct Node;
}

namespace loom::parallel {

struct ReducerOptions {
  int64_t bucket_bytes = int64_t{1} << 20;  ///< parallel.bucket_mb
  bool shard = false;                       ///< ZeRO-1: reduce-scatter into per-rank chunks
};

struct ReduceStats {
  double comm_ms = 0;     ///< time at least one reduction was in flight (completions are observed
                          ///< at each gradient hook and in finish(): an upper bound)
  double exposed_ms = 0;  ///< time finish() waited after backward ended
  int buckets = 0;
};

class GradientReducer {
 public:
  /// REQUIRES: `params` are float32 CPU leaf tensors requiring grad, the same
  /// list in the same order on every rank; `comm` outlives the reducer.
  GradientReducer(std::vector<at::Tensor> params, dist::Communicator& comm, const ReducerOptions& opts);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Zeroes every gradient in place (gradients must stay where the reducer put them).
  void zeroGrad();
  /// The next backward is this step's last: reductions launch as buckets fill.
  void armForLastBackward();
  /// Launches what the backward did not (parameters without gradient reduce
  /// zeros), waits for every reduction and disarms.
  ReduceStats finish();

  const BucketPlan& plan() const { return plan_; }
  const std::vector<at::Tensor>& params() const { return params_; }
  dist::Communicator& comm() const { return comm_; }
  bool sharded() const { return opts_.shard; }
  /// Sharded mode: this rank's reduced segment of bucket `b` (plan().buckets[b].segment elements).
  const at::Tensor& shardGrad(size_t b) const { return shard_grads_[b]; }

 private:
  class ReadyHook;

  void onGradReady(int param);
  void launch(size_t bucket);
  void noteCompletions();

  std::vector<at::Tensor> params_;
  dist::Communicator& comm_;
  ReducerOptions opts_;
  BucketPlan plan_;
  std::vector<at::Tensor> buffers_;      // per bucket: the reduced buffer
  std::vector<at::Tensor> shard_grads_;  // sharded: per bucket, this rank's segment
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
  std::vector<int> pending_;  // per bucket: gradients not yet final in the armed backward
  std::vector<std::unique_ptr<dist::Work>> works_;
  size_t completed_ = 0;  // works_[0, completed_) are known to be done
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point>>
      in_flight_;  // per work: launched, completion observed
  size_t next_launch_ = 0;
  bool armed_ = false;
};

}  // namespace loom::parallel
