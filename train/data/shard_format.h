// The token shard format (docs/data.md), as pure functions over bytes: no files,
// no torch, so the fuzzer and the tests drive them directly.
//
// A shard is a `.bin` file compatible with llm.c's data loader:
//   int32 header[256] little-endian: [0] = kShardMagic, [1] = kShardVersion,
//                                    [2] = token count (>= 1), the rest 0;
//   uint16 tokens[token count] little-endian.
// Beside it an optional document index `.idx` (same stem):
//   int32 header[256] little-endian: [0] = kIndexMagic, [1] = kIndexVersion,
//                                    [2] = document count (>= 1), the rest 0;
//   int64 offsets[count + 1] little-endian: offsets[d] is the first token of
//   document d, offsets[0] = 0, strictly increasing, offsets[count] = token count.
// Every document ends with kEodToken.
//
// Every function that validates takes `path` only to name the file in its
// errors, and throws loom::InputError naming the file, the expected and the
// found value, and how to repair it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loom::data {

inline constexpr int32_t kShardMagic = 20240520;  // llm.c's token-shard magic
inline constexpr int32_t kShardVersion = 1;
inline constexpr int32_t kIndexMagic = 0x5844494C;  // bytes "LIDX": loom document index
inline constexpr int32_t kIndexVersion = 1;
inline constexpr size_t kHeaderInts = 256;
inline constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);  // 1024
inline constexpr int64_t kMaxShardTokens = INT32_MAX;                  // header[2] is an int32
/// End-of-document token of loom's byte-level vocabulary (docs/data.md).
inline constexpr uint16_t kEodToken = 256;

/// `train.bin` -> `train.idx`: the path of the document index beside a shard.
std::string indexPathFor(const std::string& shard_path);

/// Validates a shard's header against the shard's total size in bytes and
/// returns its token count. `header` holds the file's first `header_size` bytes
/// (at least kHeaderBytes are read when present).
/// Throws InputError: empty file, file shorter than a header, wrong magic,
/// wrong version, token count < 1, file size != header + 2 * token count.
int64_t parseShardHeader(const std::string& path, const uint8_t* header, size_t header_size, uint64_t file_size);

/// Validates a whole `.idx` file (`bytes`, `size`) against the token count of
/// its shard and returns the document start offsets (count + 1 entries, the last
/// = token_count). Throws InputError: short or empty file, wrong magic or
/// version, document count < 1, size != header + 8 * (count + 1), offsets[0] != 0,
/// offsets not strictly increasing, offsets[count] != token_count.
std::vector<int64_t> parseDocumentIndex(const std::string& path, const uint8_t* bytes, size_t size,
                                        int64_t token_count);

/// Checks that every document of a parsed index ends with kEodToken.
/// REQUIRES: `offsets` came from parseDocumentIndex for these `tokens`.
/// Throws InputError naming the index, the document and the token found.
void checkDocumentEnds(const std::string& index_path, const uint16_t* tokens, const std::vector<int64_t>& offsets);

/// Document start offsets of a shard without an index: documents are the
/// EOD-terminated runs; tokens after the last EOD form a final document.
/// Same layout as parseDocumentIndex's result (last entry = token_count).
std::vector<int64_t> documentsFromTokens(const uint16_t* tokens, int64_t token_count);

/// The kHeaderBytes-byte header of a shard holding `token_count` tokens.
std::string encodeShardHeader(int64_t token_count);

/// The whole `.idx` file for these document offsets (count + 1 entries).
std::string encodeDocumentIndex(const std::vector<int64_t>& offsets);

}  // namespace loom::data
