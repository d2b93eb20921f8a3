#include "tests/runtime/dist/mpi_test_patterns.h"

namespace loom::dist::test {
namespace {

// k = (offset + i) % 7 + 1, as int64.
at::Tensor patternBase(int64_t count, int64_t offset) {
  return (at::arange(offset, offset + count, at::kLong) % 7) + 1;
}

}  // namespace

at::Tensor rankPattern(int rank, int64_t count, int64_t offset, at::ScalarType type) {
  return (patternBase(count, offset) * (rank + 1)).to(type);
}

at::Tensor expectedReduction(ReduceOp op, int size, int64_t count, int64_t offset, at::ScalarType type) {
  const at::Tensor k = patternBase(count, offset);
  const int64_t triangle = int64_t{size} * (size + 1) / 2;
  switch (op) {
    case ReduceOp::kSum:
      return (k * triangle).to(type);
    case ReduceOp::kMax:
      return (k * size).to(type);
    case ReduceOp::kMin:
      return k.to(type);
    case ReduceOp::kAvg:
      if (at::isIntegralType(type, /*includeBool=*/false)) return at::div(k * triangle, size, "trunc").to(type);
      return (k.to(at::kDouble) * triangle / size).to(type);
  }
  return {};
}

}  // namespace loom::dist::test
