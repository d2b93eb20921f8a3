#include "benchmarks/collectives/collective_case.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <utility>

namespace loom::bench {
namespace {

constexpr std::pair<CollectiveOp, const char*> kOpNames[] = {{CollectiveOp::kAllReduce, "all_reduce"},
                                                             {CollectiveOp::kAllGather, "all_gather"},
                                                             {CollectiveOp::kReduceScatter, "reduce_scatter"},
                                                             {CollectiveOp::kBroadcast, "broadcast"}};

constexpr std::pair<const char*, at::ScalarType> kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
    {"int8", at::kChar},     {"uint8", at::kByte},     {"int32", at::kInt},    {"int64", at::kLong}};

// Check patterns, as int64. Reductions add small values, (rank + i) mod 3, so a
// sum over n ranks is at most 2n: exact in int8 up to n = 63. Moved data uses
// (7 rank + i) mod 61, which tells apart the blocks of up to 61 ranks.
at::Tensor reducedPattern(int rank, int64_t first, int64_t count) {
  return at::arange(first, first + count, at::kLong).add_(rank).remainder_(3);
}

at::Tensor movedPattern(int rank, int64_t count) {
  return at::arange(count, at::kLong).add_(7 * rank).remainder_(61);
}

bool isInPlace(CollectiveOp op) {
  return op == CollectiveOp::kAllReduce || op == CollectiveOp::kBroadcast;
}

}  // namespace

const char* collectiveOpName(CollectiveOp op) {
  for (const auto& [value, name] : kOpNames) {
    if (value == op) return name;
  }
  LOOM_THROW(c10::Error, "unknown CollectiveOp ", static_cast<int>(op));
}

CollectiveOp parseCollectiveOp(const std::string& name, const std::string& flag) {
  for (const auto& [value, known] : kOpNames) {
    if (name == known) return value;
  }
  LOOM_THROW(InputError, flag, ": unknown operation '", name,
             "'; choose from all_reduce, all_gather, reduce_scatter, broadcast");
}

at::ScalarType parseDtype(const std::string& name, const std::string& flag) {
  for (const auto& [known, type] : kDtypes) {
    if (name == known) return type;
  }
  LOOM_THROW(InputError, flag, ": unknown dtype '", name,
             "'; choose from float32, float64, float16, bfloat16, int8, uint8, int32, int64");
}

CollectiveCase::CollectiveCase(CollectiveOp op, int64_t bytes, at::ScalarType dtype, int rank, int world)
    : op_(op), dtype_(dtype), rank_(rank), world_(world) {
  const int64_t elements = bytes / static_cast<int64_t>(c10::elementSize(dtype));
  count_ = std::max<int64_t>(1, isInPlace(op) ? elements : elements / world);
  const at::TensorOptions options = at::TensorOptions().dtype(dtype);
  switch (op_) {
    case CollectiveOp::kAllReduce:
    case CollectiveOp::kBroadcast:
      input_ = at::empty({count_}, options);
      output_ = input_;
      break;
    case CollectiveOp::kAllGather:
      input_ = at::empty({count_}, options);
      output_ = at::empty({count_ * world_}, options);
      break;
    case CollectiveOp::kReduceScatter:
      input_ = at::empty({count_ * world_}, options);
      output_ = at::empty({count_}, options);
      break;
  }
}

int64_t CollectiveCase::sizeBytes() const {
  const int64_t elements = isInPlace(op_) ? count_ : count_ * world_;
  return elements * static_cast<int64_t>(c10::elementSize(dtype_));
}

const char* CollectiveCase::redop() const {
  return op_ == CollectiveOp::kAllReduce || op_ == CollectiveOp::kReduceScatter ? "sum" : "none";
}

double CollectiveCase::busBandwidthFactor() const {
  const double n = world_;
  switch (op_) {
    case CollectiveOp::kAllReduce:
      return 2.0 * (n - 1) / n;
    case CollectiveOp::kAllGather:
    case CollectiveOp::kReduceScatter:
      return (n - 1) / n;
    case CollectiveOp::kBroadcast:
      break;
  }
  return 1.0;
}

void CollectiveCase::zeroBuffers() {
  input_.zero_();
  output_.zero_();
}

void CollectiveCase::fillCheckPattern() {
  output_.zero_();
  switch (op_) {
    case CollectiveOp::kAllReduce:
    case CollectiveOp::kReduceScatter:
      input_.copy_(reducedPattern(rank_, 0, input_.numel()));
      break;
    case CollectiveOp::kAllGather:
      input_.copy_(movedPattern(rank_, count_));
      break;
    case CollectiveOp::kBroadcast:
      // Non-root ranks keep zeros: a broadcast that moved nothing fails the check.
      if (rank_ == root()) input_.copy_(movedPattern(rank_, count_));
      break;
  }
}

std::unique_ptr<dist::Work> CollectiveCase::launch(dist::Communicator& comm) {
  switch (op_) {
    case CollectiveOp::kAllReduce:
      return comm.allReduce(input_, dist::ReduceOp::kSum);
    case CollectiveOp::kAllGather:
      return comm.allGather(input_, output_);
    case CollectiveOp::kReduceScatter:
      return comm.reduceScatter(input_, output_, dist::ReduceOp::kSum);
    case CollectiveOp::kBroadcast:
      return comm.broadcast(input_, root());
  }
  LOOM_THROW(c10::Error, "unknown CollectiveOp ", static_cast<int>(op_));
}

int64_t CollectiveCase::countWrong() const {
  at::Tensor expected;
  switch (op_) {
    case CollectiveOp::kAllReduce:
    case CollectiveOp::kReduceScatter: {
      const int64_t first = op_ == CollectiveOp::kReduceScatter ? rank_ * count_ : 0;
      expected = at::zeros({count_}, at::kLong);
      for (int q = 0; q < world_; ++q) {
        expected.add_(reducedPattern(q, first, count_));
      }
      break;
    }
    case CollectiveOp::kAllGather: {
      std::vector<at::Tensor> blocks;
      for (int q = 0; q < world_; ++q) {
        blocks.push_back(movedPattern(q, count_));
      }
      expected = at::cat(blocks);
      break;
    }
    case CollectiveOp::kBroadcast:
      expected = movedPattern(root(), count_);
      break;
  }
  return at::ne(output_, expected.to(dtype_)).sum().item<int64_t>();
}

}  // namespace loom::bench
