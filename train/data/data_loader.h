// Training samples from a token shard, as int64 tensors, deterministic from
// (seed, sample index) alone so that any rank, a resumed run or a re-sharded
// elastic step reads exactly the same tokens (definitions in docs/data.md).
//
//   window j       tokens [j*seq_len, j*seq_len + seq_len + 1), j in [0, N),
//                  N = (tokens - 1) / seq_len; inputs = the first seq_len,
//                  targets = the last seq_len.
//   global sample  g >= 0 reads window windowOf(g):
//                  sequential: g mod N;
//                  shuffled:   P_{seed, g / N}[g mod N] (sample_order.h), so
//                  every window is read once per epoch, in a new order each epoch.
//   step s         global samples [s*B, (s+1)*B), B = global_batch. Group g of
//                  G (a replica of an outer optimizer; one group without) reads
//                  [s*B + floor(g*B/G), s*B + floor((g+1)*B/G)), n_g samples;
//                  its rank r of W reads [floor(r*n_g/W), floor((r+1)*n_g/W))
//                  of that (B/(G*W) samples each when G*W divides B; an
//                  elastic job that lost ranks may split unevenly), as
//                  micro-batches of micro_batch (the last one smaller when
//                  micro_batch does not divide the share).
//   cursor         global samples consumed = steps done * B; a checkpoint stores
//                  it and seek() resumes from it.
#pragma once

#include "runtime/config/options.h"
#include "train/data/token_shard.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace loom::data {

struct LoaderOptions {
  int64_t seq_len = 128;                       ///< data.seq_len: tokens per sample input
  SampleOrder order = SampleOrder::kShuffled;  ///< data.order
  uint64_t seed = 1234;                        ///< train.seed
  int rank = 0;                                ///< this rank's index within its group
  int world_size = 1;                          ///< ranks of its group
  int64_t global_batch = 16;                   ///< train.global_batch: samples per step, all ranks
  int64_t micro_batch = 16;                    ///< train.micro_batch: samples per forward/backward
  int group = 0;                               ///< this rank's group (replica)
  int groups = 1;                              ///< groups sharing each step's global batch
};

/// Movable. Not thread-safe for nextStep()/seek(); the const methods may be
/// called concurrently (the permutation cache is locked).
class DataLoader {
 public:
  /// Throws InputError: seq_len < 1; global_batch or micro_batch < 1; rank
  /// outside [0, world_size); group outside [0, groups); a shard shorter than one window (seq_len + 1
  /// tokens). (That the world divides the batch evenly is the config's rule,
  /// for the starting world: runtime/config/validate.cpp.)
  DataLoader(std::shared_ptr<const TokenShard> shard, const LoaderOptions& opts);

  /// N = (tokens - 1) / seq_len.
  int64_t windowsPerEpoch() const { return windows_; }
  /// The window j that global sample `global_sample` (>= 0) reads.
  int64_t windowOf(int64_t global_sample) const;
  /// int64 [count, seq_len + 1]: row i is the window of global sample first + i.
  at::Tensor samples(int64_t first_global_sample, int64_t count) const;

  /// This rank's share of the next step's global batch, as tensors of
  /// [micro_batch (the last maybe fewer), seq_len + 1]; advances cursor() by global_batch.
  std::vector<at::Tensor> nextStep();
  /// Where this rank's share starts within a step's global batch, and its size.
  int64_t rankOffset() const;
  int64_t rankCount() const;
  /// Samples per step of this rank's group (n_g).
  int64_t groupCount() const;
  /// Global samples consumed so far (= steps done * global_batch).
  int64_t cursor() const { return cursor_; }
  /// Resumes at `cursor` (a value cursor() returned). Throws InputError when it
  /// is negative or not a multiple of global_batch.
  void seek(int64_t cursor);

  const LoaderOptions& options() const { return opts_; }
  const TokenShard& shard() const { return *shard_; }

 private:
  // The permutation of one epoch, kept because consecutive samples share it.
  struct OrderCache {
    std::mutex mutex;
    int64_t epoch = -1;          // GUARDED_BY(mutex)
    std::vector<int64_t> order;  // GUARDED_BY(mutex): P_{seed, epoch}
  };

  int64_t windowLocked(int64_t global_sample) const;  // REQUIRES: cache_->mutex held

  std::shared_ptr<const TokenShard> shard_;
  LoaderOptions opts_;
  int64_t windows_ = 0;
  int64_t cursor_ = 0;
  std::unique_ptr<OrderCache> cache_ = std::make_unique<OrderCache>();
};

}  // namespace loom::data
