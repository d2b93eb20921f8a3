// How loom's tensors and reduce operations map onto MPI (internal to runtime/dist).
#pragma once

#include "runtime/dist/communicator.h"

#include <c10/core/ScalarType.h>
#include <mpi.h>

#include <array>

namespace loom::dist {

/// The datatype and operator of one MPI reduction.
struct MpiReduction {
  MPI_Datatype datatype = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
};

/// The reductions a communicator can run: MPI's predefined operators for
/// float32/float64/int8/uint8/int32/int64, and operators of our own for
/// float16 and bfloat16, which MPI does not know: they add (or compare) in
/// float32 and round each partial result back to 16 bits, as NCCL does, so
/// the wire carries 2 bytes per element. kAvg reduces with the sum; the caller
/// divides by the world size.
///
/// Creating and freeing operators is local (no communication). Keep this object
/// alive while any reduction using it runs; destroy it before MPI_Finalize.
class MpiReduceOps {
 public:
  MpiReduceOps();
  ~MpiReduceOps();
  MpiReduceOps(const MpiReduceOps&) = delete;
  MpiReduceOps& operator=(const MpiReduceOps&) = delete;

  /// Throws InputError naming `type` when it cannot be reduced (bool, complex, ...).
  MpiReduction reduction(ReduceOp op, at::ScalarType type) const;

 private:
  // [half, bfloat16] x [sum, max, min]
  std::array<std::array<MPI_Op, 3>, 2> custom_{};
};

/// True when the byte ranges of `a` and `b` (as laid out in memory) intersect.
bool bytesOverlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes);

}  // namespace loom::dist
