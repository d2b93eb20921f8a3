// Validation of a safetensors header (docs/safetensors.md), torch-free so the
// fuzzer links it alone.
//
// Layout: 8-byte little-endian N, N bytes of UTF-8 JSON (possibly padded with
// trailing spaces), then the data buffer. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data
// buffer) plus an optional "__metadata__" object of string -> string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace loom::checkpoint {

/// The largest JSON header loom accepts (the reference implementation's cap):
/// a bigger N is a corrupt file, not a model.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

/// "__metadata__": the header key that holds string -> string metadata.
constexpr std::string_view kSafetensorsMetadataKey = "__metadata__";

struct TensorEntry {
  std::string name;
  std::string dtype;           ///< one of F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL
  std::vector<int64_t> shape;  ///< empty for a 0-d tensor
  uint64_t begin = 0;          ///< byte offsets into the data buffer, end exclusive
  uint64_t end = 0;
};

struct SafetensorsHeader {
  /// In file order: sorted by data offset (zero-size tensors keep header order).
  std::vector<TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  ///< 8 + N: file offset of the data buffer
};

/// Bytes per element of a safetensors dtype name; 0 when loom does not support it.
size_t safetensorsItemSize(std::string_view dtype);

/// The supported dtype names, "F64, F32, ..., BOOL", for messages.
std::string safetensorsDtypeList();

/// How many leading bytes of a file of `file_size` bytes parseSafetensorsHeader
/// needs, given the file's first min(file_size, 8) bytes in `first_bytes`:
/// 8 + N, or min(file_size, 8) when N exceeds kMaxSafetensorsHeaderBytes or the
/// file (the parser rejects those from the length field alone).
uint64_t safetensorsPrefixSize(std::string_view first_bytes, uint64_t file_size);

/// Validates the header found at the start of a file of `file_size` bytes.
/// `prefix` holds at least the file's first safetensorsPrefixSize(...) bytes.
/// Checks the length field, the JSON (syntax, duplicate keys, shape of every
/// entry), dtypes, shapes, offsets against the data buffer, byte counts against
/// dtype * shape, and that the tensors tile the data buffer with no hole and no
/// overlap. Throws InputError naming `path` (and the tensor) on any defect.
SafetensorsHeader parseSafetensorsHeader(std::string_view prefix, uint64_t file_size, const std::string& path);

}  // namespace loom::checkpoint
