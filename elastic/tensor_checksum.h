// Fast, deterministic 64-bit checksums of tensors and of named tensor sets, for
// verifying in-memory snapshots (ARCHITECTURE.md §2 "Elastic";
// parallel_elastic.md §4.4 and §4.7 step 4: "verify with a per-tensor hash").
//
// The byte hash is xxHash64 (Yann Collet's algorithm, reimplemented here: four
// 64-bit lanes over 32-byte stripes, so it runs near memory bandwidth on one
// core). A tensor's checksum is NOT the xxHash64 of its bytes; it is defined as
//   h = fold(kHeaderSeed, dtype, ndim, sizes...)            (metadata)
//   h = fold(h, xxh64(chunk_k, seed = k)) for each 256 KiB chunk k of its bytes
//   checksum = avalanche(fold(h, nbytes))
// so equal bytes in another shape or dtype hash differently, and the chunks can
// be hashed independently (in parallel, or while they are being copied:
// copyWithChecksum). Checksums are a pure function of the bytes, dtype and shape
// on one machine (little-endian hosts only, which is every host loom supports);
// they detect corruption, they are not cryptographic.
#pragma once

#include "runtime/core/named_tensors.h"

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace loom::elastic {

using loom::NamedTensors;

/// Bytes per independently hashed chunk of a tensor (part of the checksum's definition).
constexpr int64_t kChecksumChunkBytes = int64_t{256} << 10;

/// xxHash64 of `size` bytes at `data` with `seed`; equals the reference XXH64().
uint64_t xxHash64(const void* data, size_t size, uint64_t seed = 0);

/// Mixes `value` into `hash` (order-sensitive). Not avalanched: finish with checksumFinish().
uint64_t checksumFold(uint64_t hash, uint64_t value);
/// The final avalanche of a folded hash.
uint64_t checksumFinish(uint64_t hash);

/// The checksum of a CPU tensor's values, dtype and shape (defined above). A
/// non-contiguous tensor hashes like its contiguous copy (it is copied first).
/// Throws InputError for an undefined or non-CPU tensor.
uint64_t tensorChecksum(const at::Tensor& tensor);

/// Copies `src` into `dst` and returns tensorChecksum(dst), reading each chunk
/// back from cache right after copying it: one pass over memory instead of two.
/// REQUIRES: dst is a contiguous CPU tensor of src's dtype and shape, not
/// overlapping src. Throws InputError when src is undefined or not on the CPU,
/// or when dst does not match it.
uint64_t copyWithChecksum(const at::Tensor& src, const at::Tensor& dst);

/// Order-sensitive combination of every name and tensorChecksum() of `state`:
/// renaming, reordering, dropping or changing any tensor changes it.
uint64_t stateChecksum(const NamedTensors& state);

/// "0x" and 16 hex digits, for messages.
std::string checksumHex(uint64_t checksum);

}  // namespace loom::elastic
