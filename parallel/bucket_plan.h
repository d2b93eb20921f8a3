// How gradients are grouped into communication buckets, and, with ZeRO-1, which
// elements of each parameter a rank owns. Pure arithmetic: no tensors, no
// communication, so every rank computes the same plan from the same inputs.
//
// Buckets take parameters in reverse registration order (the order backward
// produces their gradients), each filled up to `bucket_bytes` (a parameter
// larger than that gets a bucket of its own).
//
// Sharded layout (ZeRO-1, world W): parameter p with n_p elements is cut into W
// chunks of c_p = ceil(n_p / W) elements (the last padded with zeros). A
// bucket's buffer holds W segments of S = sum of its c_p elements, segment r
// being rank r's chunks one after another:
//   [ rank 0: p0 chunk 0 | p1 chunk 0 | ... ][ rank 1: p0 chunk 1 | p1 chunk 1 | ... ] ...
// so one reduce-scatter hands rank r exactly its chunks, and one all-gather
// of the segments rebuilds the buffer. Worked example, W = 2, bucket {a: 5
// elements, b: 2 elements}: c_a = 3, c_b = 1, S = 4; buffer = [a0 a1 a2 b0 | a3 a4 0 b1].
// Unsharded layout (W = 1) is the parameters back to back.
#pragma once

#include <cstdint>
#include <vector>

namespace loom::parallel {

struct ParamSlot {
  int param = 0;           ///< index into the parameter list given to makeBucketPlan
  int64_t numel = 0;       ///< n_p
  int64_t chunk = 0;       ///< c_p = ceil(n_p / shards)
  int64_t offset = 0;      ///< start of this parameter's chunk inside a segment
};

struct Bucket {
  std::vector<ParamSlot> slots;  ///< in the order gradients are expected
  int64_t segment = 0;           ///< S: elements per rank segment
  int64_t elements() const { return segment * shards; }
  int shards = 1;
};

struct BucketPlan {
  std::vector<Bucket> buckets;
  std::vector<std::pair<int, int>> where;  ///< per parameter: (bucket, slot)
};

/// `numels[i]` is parameter i's element count; `element_bytes` the gradient
/// dtype's size; `shards` = W for ZeRO-1, 1 otherwise.
/// REQUIRES: bucket_bytes >= 1, shards >= 1, every numel >= 1.
BucketPlan makeBucketPlan(const std::vector<int64_t>& numels, int64_t element_bytes, int64_t bucket_bytes,
                          int shards);

}  // namespace loom::parallel
