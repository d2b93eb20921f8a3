#include "runtime/dist/mpi_types.h"

#include "runtime/core/error.h"
#include "runtime/dist/mpi_check.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>

namespace loom::dist {
namespace {

enum Combine { kAdd = 0, kLarger = 1, kSmaller = 2 };

// MPI_User_function over 16-bit floats: inout[i] = combine(in[i], inout[i]),
// computed in float32 and rounded once.
template <typename T, Combine kCombine>
void combine16(void* in, void* inout, int* length, MPI_Datatype* /*datatype*/) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *length; ++i) {
    const float x = static_cast<float>(a[i]);
    const float y = static_cast<float>(b[i]);
    if constexpr (kCombine == kAdd) {
      b[i] = static_cast<T>(x + y);
    } else if constexpr (kCombine == kLarger) {
      b[i] = static_cast<T>(std::max(x, y));
    } else {
      b[i] = static_cast<T>(std::min(x, y));
    }
  }
}

int combineIndex(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return kAdd;
    case ReduceOp::kMax:
      return kLarger;
    case ReduceOp::kMin:
      return kSmaller;
  }
  return kAdd;
}

MPI_Op predefinedOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  return MPI_SUM;
}

}  // namespace

MpiReduceOps::MpiReduceOps() {
  const std::array<std::array<MPI_User_function*, 3>, 2> functions = {{
      {&combine16<c10::Half, kAdd>, &combine16<c10::Half, kLarger>, &combine16<c10::Half, kSmaller>},
      {&combine16<c10::BFloat16, kAdd>, &combine16<c10::BFloat16, kLarger>, &combine16<c10::BFloat16, kSmaller>},
  }};
  for (auto& ops : custom_) ops.fill(MPI_OP_NULL);
  for (size_t type = 0; type < functions.size(); ++type) {
    for (size_t op = 0; op < functions[type].size(); ++op) {
      LOOM_MPI_CHECK(MPI_Op_create(functions[type][op], /*commute=*/1, &custom_[type][op]),
                     "creating the 16-bit float reduction operators");
    }
  }
}

MpiReduceOps::~MpiReduceOps() {
  int finalized = 0;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
  for (auto& ops : custom_) {
    for (MPI_Op& op : ops) {
      if (op != MPI_OP_NULL) MPI_Op_free(&op);
    }
  }
}

MpiReduction MpiReduceOps::reduction(ReduceOp op, at::ScalarType type) const {
  switch (type) {
    case at::kFloat:
      return {MPI_FLOAT, predefinedOp(op)};
    case at::kDouble:
      return {MPI_DOUBLE, predefinedOp(op)};
    case at::kChar:
      return {MPI_INT8_T, predefinedOp(op)};
    case at::kByte:
      return {MPI_UINT8_T, predefinedOp(op)};
    case at::kInt:
      return {MPI_INT32_T, predefinedOp(op)};
    case at::kLong:
      return {MPI_INT64_T, predefinedOp(op)};
    case at::kHalf:
      return {MPI_UINT16_T, custom_[0][combineIndex(op)]};
    case at::kBFloat16:
      return {MPI_UINT16_T, custom_[1][combineIndex(op)]};
    default:
      break;
  }
  LOOM_THROW(InputError, "mpi: cannot ", reduceOpName(op), "-reduce ", type,
             " tensors; the MPI backend reduces Float, Double, Half, BFloat16, Char, Byte, Int and Long");
}

bool bytesOverlap(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
  if (a_bytes == 0 || b_bytes == 0) return false;
  const auto a_begin = reinterpret_cast<uintptr_t>(a);
  const auto b_begin = reinterpret_cast<uintptr_t>(b);
  return a_begin < b_begin + static_cast<uintptr_t>(b_bytes) && b_begin < a_begin + static_cast<uintptr_t>(a_bytes);
}

}  // namespace loom::dist
