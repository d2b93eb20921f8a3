// How a tensor-parallel group shards tokens (sequence parallelism and the
// reduce-scatter path of the fused all-reduce + add + RMSNorm, on the CPU, in
// libtorch and in the raw CUDA launchers alike).
#pragma once

#include <cstdint>

namespace loom::parallel {

/// Rows of each rank's token shard: ceil(tokens / ranks). Rank r keeps tokens
/// [r * s, (r + 1) * s), zero-padded past `tokens`.
constexpr int64_t shardRows(int64_t tokens, int ranks) {
  return (tokens + ranks - 1) / ranks;
}

}  // namespace loom::parallel
