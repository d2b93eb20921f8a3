// Megatron-style tensor parallelism with TokenWeave's overlap (issue 7;
// parallel_elastic.md §3, docs/tensor_parallel.md).
//
// A tensor-parallel group of `size()` ranks holds every block's column-parallel
// linears (wq, wk, wv: heads split; w1, w3: ffn split) and row-parallel linears
// (wo, w2), so a sublayer ends with partial sums on every rank. The group's
// region boundaries are differentiable ops:
//
//   enter()         the embedding, replicated, into the blocks: the residual
//                   stream and the first norm's output.
//   startAddNorm()  a sublayer's end: sum the partial outputs over the group,
//                   add the residual, apply the next RMSNorm
//                   (fusedAllReduceAddRmsNorm's math), as a job on the group's
//                   CommStream; finish() returns the outputs. Between the two
//                   the caller computes something else: the other half of the
//                   tokens (token splitting).
//
// With sequence_parallel the residual is token-sharded (tokenShard) and a
// sublayer end is reduce-scatter -> add+norm on this rank's 1/ws of the tokens
// -> all-gather; without it, all-reduce -> add+norm on every token. Backward
// mirrors forward (all-gather <-> reduce-scatter, all-reduce where a
// replicated tensor feeds column-parallel linears) and also runs on the
// stream: a finish()'s backward queues the gradient's communication and the
// start's backward collects it, so the reversed schedule overlaps too.
//
// On CUDA every job's kernels and collectives run on a side stream
// (side_stream.h), so one half's communication overlaps the other half's
// compute on the GPU as well: TokenWeave's two streams.
//
// Gradients: column/row-parallel weights get their own shard's gradient; every
// replicated parameter (embedding, norms, head) gets the full gradient on every
// rank (sequence-parallel norm gains are summed over the group inside the
// backward). So data parallelism across groups reduces gradients exactly as
// without tensor parallelism.
#pragma once

#include "parallel/comm_stream.h"
#include "parallel/side_stream.h"
#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <vector>

namespace loom::parallel {

struct TensorParallelOptions {
  /// Residual token-sharded; sublayer ends reduce-scatter and all-gather
  /// (false: all-reduce, and every rank norms every token).
  bool sequence_parallel = true;
  /// Micro-batches with at least this many tokens run as two halves whose
  /// communication overlaps the other half's compute; 0 = never split.
  int64_t split_min_tokens = 1024;
};

/// How a micro-batch runs: whole, or as two halves of its sequences, or (one
/// sequence) two halves of its tokens, the second half attending to the first.
struct TokenSplit {
  int parts = 1;
  bool by_tokens = false;
};

struct AddNormOutput {
  at::Tensor out;       ///< [tokens, hidden], the same on every rank of the group
  at::Tensor residual;  ///< residual_out: this rank's token shard (sequence parallel) or all tokens
};

class PendingAddNorm;

/// A job queued on the group's stream, with its crossing to the side stream
/// (none on the CPU).
struct QueuedJob {
  CommTicket ticket;
  std::shared_ptr<StreamHandoff> handoff;
  /// Waits for the job; on CUDA the caller's stream then follows the job's
  /// device work. `results`: where the job left tensors it made that the
  /// caller uses (read after the wait).
  void wait(std::initializer_list<const at::Tensor*> results = {});
};

class TensorParallel {
 public:
  /// `group` must outlive this object and every graph built through it.
  TensorParallel(dist::Communicator& group, TensorParallelOptions opts);

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  dist::Communicator& group() { return group_; }
  CommStream& stream() { return stream_; }
  const TensorParallelOptions& options() const { return opts_; }

  /// Queues `job` on the group's stream. On CUDA its device work runs on the
  /// side stream, after the work queued so far on the caller's current stream.
  /// `inputs`: the tensors it reads (their device picks the side stream).
  QueuedJob submit(std::function<void()> job, const std::vector<at::Tensor>& inputs);
  /// A blocking collective in order: runs `job` on the stream, waits, and
  /// returns the tensor it made, ready for the caller's stream.
  at::Tensor run(const std::function<at::Tensor()>& job, const std::vector<at::Tensor>& inputs);

  /// How a micro-batch of `sequences` x `tokens_per_sequence` tokens runs:
  /// whole below split_min_tokens; else in halves of its sequences, or of its
  /// tokens when it has one sequence (of 2 tokens or more). No half is empty.
  TokenSplit split(int64_t sequences, int64_t tokens_per_sequence) const;

  /// x: [tokens, hidden], replicated (the embedding). Returns the first norm's
  /// output (all tokens) and the residual stream (this rank's shard with
  /// sequence parallelism, else x).
  AddNormOutput enter(const at::Tensor& x, const at::Tensor& weight, double eps);

  /// partial: [tokens, hidden] this rank's partial sum; residual as enter()
  /// returned it. `replicated_consumer`: `out` feeds a replicated layer (the
  /// head) rather than column-parallel linears, so its gradient is already
  /// whole on every rank. Collective over the group (in call order).
  PendingAddNorm startAddNorm(const at::Tensor& partial, const at::Tensor& residual, const at::Tensor& weight,
                              double eps, bool replicated_consumer);

 private:
  /// The side stream for jobs on `device` (nullptr on the CPU), made on first use.
  SideStream* sideStreamFor(const c10::Device& device);

  dist::Communicator& group_;
  TensorParallelOptions opts_;
  std::mutex side_mutex_;
  std::unique_ptr<SideStream> side_;  ///< guarded by side_mutex_ until made
  c10::Device side_device_ = c10::kCPU;
  CommStream stream_;  ///< last: its worker, which runs jobs using the members above, stops first
};

/// A sublayer end in flight.
class PendingAddNorm {
 public:
  /// Waits for the job; differentiable w.r.t. partial, residual and weight.
  AddNormOutput finish();

 private:
  friend class TensorParallel;
  std::vector<at::Tensor> started_;  ///< the start node's outputs, filled by the job
  c10::IValue capsule_;              ///< the sublayer end both nodes share
};

}  // namespace loom::parallel
