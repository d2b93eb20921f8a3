// Closed-form tensors for collective tests, shared by the MPI and the NCCL
// tests: every rank can compute what any other rank holds, so results are
// checked against formulas rather than against another backend.
#pragma once

#include "runtime/dist/communicator.h"

#include <ATen/ATen.h>

namespace loom::dist::test {

/// Elements (rank + 1) * ((offset + i) % 7 + 1) for i in [0, count), as `type`.
/// The values stay small integers (at most 7 * 10 after summing 4 ranks), so
/// every dtype, bfloat16 included, holds them and their sums exactly.
at::Tensor rankPattern(int rank, int64_t count, int64_t offset, at::ScalarType type);

/// op over ranks 0..size-1 of rankPattern(rank, count, offset, type), in
/// closed form: sum = k * n(n+1)/2, max = k * n, min = k, avg = sum / n
/// (truncated toward zero for integer types), with k = (offset + i) % 7 + 1.
at::Tensor expectedReduction(ReduceOp op, int size, int64_t count, int64_t offset, at::ScalarType type);

}  // namespace loom::dist::test
