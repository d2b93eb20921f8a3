// Averaging an fp32 buffer over a group of ranks through a codec, with point-to-
// point messages only (no collective), so that every member ends with byte-
// identical values (../shared/reference/optimizers.md §2.6, §6.5).
//
// The buffer is cut into one chunk per member (member i owns elements
// [i*n/g, (i+1)*n/g)). Reduce: each member encodes every other member's chunk
// of its buffer and sends it there; the owner decodes the g contributions (its
// own goes through encode -> decode too, so it counts exactly what the others
// would have seen), sums them in member order in fp32 and divides by g. Gather:
// the owner encodes its averaged chunk and sends the bytes to every member;
// every member, the owner included, decodes those same bytes into its buffer.
// Each member sends and receives 2 (g - 1) / g * encodedBytes(n) bytes, like a
// ring all-reduce (exactly: sum over j != i of encodedBytes(chunk j) plus
// (g - 1) * encodedBytes(chunk i) for member i; empty chunks send nothing);
// values are quantized twice (once on the way in, once on the way out) whatever g is.
//
// Messages: the reduce phase uses tag 2 * tag and the gather phase 2 * tag + 1
// (so one call owns tags {2 tag, 2 tag + 1}). Every receive is posted before any
// send, so the exchange cannot deadlock whatever the transport's buffering.
#pragma once

#include "runtime/config/options.h"
#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom::optim::outer {

/// Elements [begin, end) of a numel-element buffer that group member
/// `group_rank` of `group_size` owns: [i * numel / g, (i + 1) * numel / g).
struct ChunkRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
inline ChunkRange chunkRange(int64_t numel, int group_size, int group_rank) {
  return {group_rank * numel / group_size, (group_rank + 1) * numel / group_size};
}

/// Replaces `buffer` (contiguous fp32) by the average over `group` of the
/// members' buffers, passed through `codec`. `group` holds ranks of `comm`,
/// ascending, including comm.rank(); every member calls with the same group,
/// the same numel and the same `tag` (tags tell apart concurrent averages in
/// different groups of one communicator; use distinct tags per call site).
/// A group of one leaves the buffer as decode(encode(buffer)). Blocking; throws
/// PeerLostError (via Work::wait) when a member fails or times out, InputError
/// when the group, buffer or tag is invalid (tag must lie in [0, 2^30)) or the
/// buffer holds a non-finite value (encode()).
void averageInGroup(dist::Communicator& comm, const std::vector<int>& group, at::Tensor& buffer,
                    PseudoGradientCodec codec, int tag);

}  // namespace loom::optim::outer
