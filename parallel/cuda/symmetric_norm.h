// The fused all-reduce + add + RMSNorm on NCCL symmetric memory (NCCL >= 2.28):
// TokenWeave's one-kernel decomposition (parallel_elastic.md §3.3, §3.6) with a
// few CTAs, so the compute it overlaps keeps the other SMs. Same semantics and
// residual layout as reduceScatterAddRmsNorm (fused_allreduce_norm_cuda.h): each
// rank reduces its 1/ws of the tokens, adds its residual shard, normalises, and
// writes the result into every rank's staging buffer; symmetric_norm_kernel.h has
// the kernel and its two variants:
//   multicast  NVLS multimem (Hopper with an NVSwitch, 2+ ranks): the switch sums
//              and broadcasts;
//   unicast    loads from and stores to every peer's buffer over NVLink/P2P
//              (any LSA team, including a single rank).
// Both need every rank in one load/store-accessible team (one NVLink domain);
// elsewhere the workspace cannot be built and callers use the reduce-scatter path.
#pragma once

#include "parallel/cuda/fused_allreduce_norm_cuda.h"
#include "parallel/cuda/symmetric_norm_kernel.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>

namespace loom::parallel::cuda {

using detail::SymmetricNormShape;

struct SymmetricNormOptions {
  /// CTAs per launch (TokenWeave's MAX_CTAS; its configs use 4 or 8): the SMs the
  /// kernel takes from overlapping compute. 1..kMaxSymmetricCtas.
  int max_ctas = 8;
  /// Use NVLS multimem when every rank's GPU supports multicast and there are 2+ ranks.
  bool allow_multicast = true;
  /// chooseFusedNormPath takes the symmetric path up to this many bytes of x per
  /// rank. Not yet measured on multi-GPU hardware: the guess is that beyond a few
  /// tens of MiB NCCL's reduce-scatter + all-gather, with many more channels than
  /// max_ctas, moves data faster. Tune it with benchmarks on the target machine.
  size_t max_auto_bytes = size_t{32} << 20;
};

constexpr int kMaxSymmetricCtas = 32;

/// The staging buffer (ncclMemAlloc, registered with ncclCommWindowRegister and
/// NCCL_WIN_COLL_SYMMETRIC), its window and the ncclDevComm (one LSA barrier per
/// CTA; lsaMultimem when multicast) that symmetricAllReduceAddRmsNorm uses.
/// Creation and destruction are collective: every rank of `comm` does both, with
/// the same arguments, on the communicator's device (made current for the calls).
/// `comm` must outlive the workspace. Not thread-safe: one launch at a time.
class SymmetricNormWorkspace {
 public:
  /// Staging for `capacity_rows` tokens of `hidden` elements. Throws InputError for
  /// bad arguments (hidden % 8 != 0, max_ctas outside 1..kMaxSymmetricCtas, rows < 1)
  /// or when the ranks do not form one load/store team; c10::Error when CUDA or
  /// NCCL fail (e.g. NCCL's own NVLS support is off while the GPUs report
  /// multicast: retry with allow_multicast = false).
  SymmetricNormWorkspace(ncclComm_t comm, int64_t capacity_rows, int64_t hidden, NormDtype dtype,
                         const SymmetricNormOptions& opts = {});
  ~SymmetricNormWorkspace();
  SymmetricNormWorkspace(const SymmetricNormWorkspace&) = delete;
  SymmetricNormWorkspace& operator=(const SymmetricNormWorkspace&) = delete;

  /// [capacity_rows, hidden] of dtype, at the same window offset on every rank. A
  /// producer may write x here directly (TokenWeave's o_proj does) to skip a copy.
  void* staging() const { return staging_; }
  int64_t capacityRows() const { return capacity_rows_; }
  int64_t hidden() const { return hidden_; }
  NormDtype dtype() const { return dtype_; }
  int ranks() const { return dev_comm_.nRanks; }
  int rank() const { return dev_comm_.rank; }
  bool multicast() const { return multicast_; }
  const SymmetricNormOptions& options() const { return opts_; }

  /// The launch symmetricAllReduceAddRmsNorm makes for `tokens` (blocks <= max_ctas).
  SymmetricNormShape launchShape(int64_t tokens) const;

 private:
  friend void symmetricAllReduceAddRmsNorm(SymmetricNormWorkspace& ws, const FusedNormArgs& args, int64_t row_offset,
                                           cudaStream_t stream);
  void release() noexcept;  // what the constructor got so far, in reverse order

  ncclComm_t comm_;
  int device_ = 0;
  int64_t capacity_rows_;
  int64_t hidden_;
  NormDtype dtype_;
  SymmetricNormOptions opts_;
  void* staging_ = nullptr;
  ncclWindow_t window_ = nullptr;
  ncclDevComm dev_comm_{};
  bool dev_comm_created_ = false;
  bool multicast_ = false;
};

/// One fused call on `ws`: this call's tokens occupy staging rows
/// [row_offset, row_offset + tokens) (the same row_offset on every rank; two
/// token splits in flight use disjoint rows). args.x is copied there first unless
/// it already points there, and the normalised rows are copied to args.out unless
/// it points there too. args.residual / residual_out are this rank's shard
/// [shardRows(tokens, ranks), hidden], 16-byte aligned; weight 16-byte aligned.
/// Enqueued on `stream`; collective (every rank, same tokens and row_offset).
void symmetricAllReduceAddRmsNorm(SymmetricNormWorkspace& ws, const FusedNormArgs& args, int64_t row_offset,
                                  cudaStream_t stream);

enum class FusedNormCudaPath { kAllReduce, kReduceScatter, kSymmetricMemory };

/// The automatic choice for a sharded residual: kSymmetricMemory when `ws` is not
/// null, uses multicast, matches args' hidden and dtype, holds args.tokens rows and
/// x is at most ws->options().max_auto_bytes; kReduceScatter otherwise (without
/// multicast, NCCL's reduce-scatter + all-gather is the default; the unicast kernel
/// is there to be called explicitly). Every rank gets the same answer from the same
/// arguments.
FusedNormCudaPath chooseFusedNormPath(const SymmetricNormWorkspace* ws, const FusedNormArgs& args);

}  // namespace loom::parallel::cuda
