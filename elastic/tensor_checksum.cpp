#include "elastic/tensor_checksum.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace loom::elastic {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

// Seeds the metadata fold of tensorChecksum() and stateChecksum(), so they never
// coincide with a plain xxHash64 of the same words.
constexpr uint64_t kTensorSeed = 0x6C6F6F6D54656E73ULL;  // "loomTens"
constexpr uint64_t kStateSeed = 0x6C6F6F6D53746174ULL;   // "loomStat"

// Chunks per task of at::parallel_for: small tensors are hashed on the calling thread.
constexpr int64_t kChunksPerTask = 8;

inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline uint64_t round64(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  acc = rotl(acc, 31);
  return acc * kPrime1;
}

inline uint64_t mergeRound(uint64_t acc, uint64_t val) {
  acc ^= round64(0, val);
  return acc * kPrime1 + kPrime4;
}

void checkCpu(const at::Tensor& tensor, const char* what) {
  LOOM_CHECK_INPUT(tensor.defined(), what, ": the tensor is undefined");
  LOOM_CHECK_INPUT(tensor.device().is_cpu(), what, ": the tensor is on ", tensor.device(),
                   "; checksums take CPU tensors (copy it to the CPU first)");
}

uint64_t metadataHash(const at::Tensor& tensor) {
  uint64_t h = checksumFold(kTensorSeed, static_cast<uint64_t>(tensor.scalar_type()));
  h = checksumFold(h, static_cast<uint64_t>(tensor.dim()));
  for (int64_t size : tensor.sizes()) h = checksumFold(h, static_cast<uint64_t>(size));
  return h;
}

// tensorChecksum() of `nbytes` at `data` whose metadata hash is `h`; when `src`
// is given, each chunk is first copied from src to data.
uint64_t chunkedChecksum(uint64_t h, unsigned char* data, const unsigned char* src, int64_t nbytes) {
  const int64_t chunks = (nbytes + kChecksumChunkBytes - 1) / kChecksumChunkBytes;
  std::vector<uint64_t> hashes(static_cast<size_t>(chunks));
  at::parallel_for(0, chunks, kChunksPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t offset = k * kChecksumChunkBytes;
      const size_t len = static_cast<size_t>(std::min(kChecksumChunkBytes, nbytes - offset));
      if (src != nullptr) std::memcpy(data + offset, src + offset, len);
      hashes[static_cast<size_t>(k)] = xxHash64(data + offset, len, static_cast<uint64_t>(k));
    }
  });
  for (uint64_t chunk_hash : hashes) h = checksumFold(h, chunk_hash);
  return checksumFinish(checksumFold(h, static_cast<uint64_t>(nbytes)));
}

}  // namespace

uint64_t xxHash64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  uint64_t h;
  if (size >= 32) {
    const unsigned char* const limit = end - 32;
    uint64_t v1 = seed + kPrime1 + kPrime2;
    uint64_t v2 = seed + kPrime2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kPrime1;
    do {
      v1 = round64(v1, read64(p));
      v2 = round64(v2, read64(p + 8));
      v3 = round64(v3, read64(p + 16));
      v4 = round64(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = mergeRound(h, v1);
    h = mergeRound(h, v2);
    h = mergeRound(h, v3);
    h = mergeRound(h, v4);
  } else {
    h = seed + kPrime5;
  }
  h += static_cast<uint64_t>(size);
  for (; p + 8 <= end; p += 8) {
    h ^= round64(0, read64(p));
    h = rotl(h, 27) * kPrime1 + kPrime4;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(read32(p)) * kPrime1;
    h = rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
  }
  for (; p < end; ++p) {
    h ^= static_cast<uint64_t>(*p) * kPrime5;
    h = rotl(h, 11) * kPrime1;
  }
  return checksumFinish(h);
}

uint64_t checksumFold(uint64_t hash, uint64_t value) {
  hash ^= round64(0, value);
  return rotl(hash, 27) * kPrime1 + kPrime4;
}

uint64_t checksumFinish(uint64_t hash) {
  hash ^= hash >> 33;
  hash *= kPrime2;
  hash ^= hash >> 29;
  hash *= kPrime3;
  hash ^= hash >> 32;
  return hash;
}

uint64_t tensorChecksum(const at::Tensor& tensor) {
  checkCpu(tensor, "tensorChecksum");
  const at::Tensor contiguous = tensor.contiguous();
  const int64_t nbytes = static_cast<int64_t>(contiguous.nbytes());
  auto* data = static_cast<unsigned char*>(contiguous.data_ptr());
  return chunkedChecksum(metadataHash(contiguous), data, /*src=*/nullptr, nbytes);
}

uint64_t copyWithChecksum(const at::Tensor& src, const at::Tensor& dst) {
  checkCpu(src, "copyWithChecksum");
  checkCpu(dst, "copyWithChecksum (destination)");
  LOOM_CHECK_INPUT(dst.is_contiguous() && dst.scalar_type() == src.scalar_type() && dst.sizes() == src.sizes(),
                   "copyWithChecksum: the destination (", dst.scalar_type(), " ", dst.sizes(),
                   dst.is_contiguous() ? "" : ", non-contiguous", ") must be a contiguous tensor of the source's ",
                   src.scalar_type(), " ", src.sizes());
  const at::Tensor contiguous = src.contiguous();
  const int64_t nbytes = static_cast<int64_t>(contiguous.nbytes());
  return chunkedChecksum(metadataHash(dst), static_cast<unsigned char*>(dst.data_ptr()),
                         static_cast<const unsigned char*>(contiguous.data_ptr()), nbytes);
}

uint64_t stateChecksum(const NamedTensors& state) {
  uint64_t h = kStateSeed;
  for (const auto& [name, tensor] : state) {
    h = checksumFold(h, xxHash64(name.data(), name.size()));
    h = checksumFold(h, tensorChecksum(tensor));
  }
  return checksumFinish(checksumFold(h, static_cast<uint64_t>(state.size())));
}

std::string checksumHex(uint64_t checksum) {
  char text[19];
  std::snprintf(text, sizeof(text), "0x%016llx", static_cast<unsigned long long>(checksum));
  return text;
}

}  // namespace loom::elastic
