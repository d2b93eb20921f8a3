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
// Gradients: column/row-parallel weights get their own shard's gradient; every
// replicated parameter (embedding, norms, head) gets the full gradient on every
// rank (sequence-parallel norm gains are summed over the group inside the
// backward). So data parallelism across groups reduces gradients exactly as
// without tensor parallelism.
#pragma once

#include "parallel/comm_stream.h"
#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <memory>
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

class TensorParallel {
 public:
  /// `group` must outlive this object and every graph built through it.
  TensorParallel(dist::Communicator& group, TensorParallelOptions opts);

  int rank() const { return group_.rank(); }
  int size() const { return group_.size(); }
  dist::Communicator& group() { return group_; }
  CommStream& stream() { return stream_; }
  const TensorParallelOptions& options() const { return opts_; }

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
  dist::Communicator& group_;
  TensorParallelOptions opts_;
  CommStream stream_;
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
