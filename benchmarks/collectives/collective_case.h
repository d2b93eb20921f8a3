// One point of the collectives sweep: an operation, a buffer size and a dtype,
// with the buffers it runs on and the closed form its result must match.
//
// Sizes follow nccl-tests (NVIDIA/nccl-tests, doc/PERFORMANCE.md): S is the
// whole buffer an operation moves (the all-gather output, the reduce-scatter
// input), and `count` is nccl-tests' count column: elements of S for all-reduce
// and broadcast, elements per rank for all-gather and reduce-scatter. Bus
// bandwidth = S / time * factor, factor 2(n-1)/n for all-reduce, (n-1)/n for
// all-gather and reduce-scatter, 1 for broadcast.
#pragma once

#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::bench {

enum class CollectiveOp { kAllReduce, kAllGather, kReduceScatter, kBroadcast };

/// "all_reduce", "all_gather", "reduce_scatter", "broadcast" (nccl-tests' names).
const char* collectiveOpName(CollectiveOp op);
/// The inverse of collectiveOpName; throws InputError naming `flag` and the choices.
CollectiveOp parseCollectiveOp(const std::string& name, const std::string& flag);
/// float32, float64, float16, bfloat16, int8, uint8, int32, int64; throws InputError otherwise.
at::ScalarType parseDtype(const std::string& name, const std::string& flag);

class CollectiveCase {
 public:
  /// The case closest to `bytes` (at least one element per rank) on a world of
  /// `world` ranks, for the rank `rank`.
  CollectiveCase(CollectiveOp op, int64_t bytes, at::ScalarType dtype, int rank, int world);

  CollectiveOp op() const { return op_; }
  int64_t sizeBytes() const;
  int64_t count() const { return count_; }
  /// "sum" for reductions, "none" otherwise (nccl-tests' redop column).
  const char* redop() const;
  /// The broadcast root, -1 for the other operations.
  int root() const { return op_ == CollectiveOp::kBroadcast ? 0 : -1; }
  double busBandwidthFactor() const;

  /// Zero inputs for timing: repeated in-place reductions of zeros neither
  /// overflow nor produce denormals, so every iteration costs the same.
  void zeroBuffers();
  /// Inputs set to this rank's check pattern, outputs cleared.
  void fillCheckPattern();
  /// Starts the operation on `comm` (in place for all-reduce and broadcast).
  std::unique_ptr<dist::Work> launch(dist::Communicator& comm);
  /// Elements of this rank's result that differ from the closed form, after a
  /// launch() on fillCheckPattern()'s inputs. Exact: the pattern's values are
  /// small integers, and sums over up to 63 ranks stay exact in every dtype.
  int64_t countWrong() const;

 private:
  CollectiveOp op_;
  at::ScalarType dtype_;
  int rank_;
  int world_;
  int64_t count_;
  at::Tensor input_;
  at::Tensor output_;  ///< the input itself for in-place operations
};

}  // namespace loom::bench
