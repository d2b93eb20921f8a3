// Which parameters tensor parallelism splits, and how whole tensors and
// shards convert (docs/tensor_parallel.md). Names are the safetensors keys
// (model/llama.h), optionally behind a prefix such as the optimizer state's
// "exp_avg.": a tensor is split when its name ends with a split parameter's.
//
//   rows (dim 0, column-parallel):  attn.wq, attn.wk, attn.wv (heads), mlp.w1, mlp.w3
//   columns (dim 1, row-parallel):  attn.wo, mlp.w2
//   replicated:                     tok_emb, the norms, head
//
// Rank r of tp holds the r-th of tp equal slices along the split dimension,
// so a model built with LlamaImpl(opts, tp) has exactly these shapes, and
// checkpoints hold whole tensors whatever tp was.
#pragma once

#include "runtime/core/named_tensors.h"
#include "runtime/dist/communicator.h"

#include <string>

namespace loom::model {

/// 0 or 1: the dimension tensor parallelism splits `name` along; -1: replicated.
int tensorParallelDim(const std::string& name);

/// Rank `rank`'s shards of whole tensors (copies; replicated ones are copied
/// whole). Throws InputError when a split dimension is not a multiple of tp.
NamedTensors shardTensors(const NamedTensors& whole, int tp, int rank);

/// Whole tensors from every rank's shards, on every rank of `group` (the
/// tensor-parallel group, ranks in shard order); replicated tensors are this
/// rank's. Collective over `group`, in the order of `shards`.
NamedTensors gatherTensors(const NamedTensors& shards, dist::Communicator& group);

}  // namespace loom::model
