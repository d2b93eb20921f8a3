#include "train/data/shard_format.h"

#include "runtime/core/error.h"

#include <filesystem>

namespace loom::data {
namespace {

constexpr const char* kRepairHint = "rewrite it with loom-data (docs/data.md)";

// Explicit little-endian decoding: the format is LE whatever the host is.
int32_t readInt32(const uint8_t* p) {
  const uint32_t v = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
                     static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
  return static_cast<int32_t>(v);
}

int64_t readInt64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return static_cast<int64_t>(v);
}

void appendLittleEndian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

std::string encodeHeader(int32_t magic, int32_t version, int64_t count) {
  std::string out;
  out.reserve(kHeaderBytes);
  appendLittleEndian(out, static_cast<uint32_t>(magic), 4);
  appendLittleEndian(out, static_cast<uint32_t>(version), 4);
  appendLittleEndian(out, static_cast<uint32_t>(count), 4);
  out.resize(kHeaderBytes, '\0');
  return out;
}

}  // namespace

std::string indexPathFor(const std::string& shard_path) {
  return std::filesystem::path(shard_path).replace_extension(".idx").string();
}

int64_t parseShardHeader(const std::string& path, const uint8_t* header, size_t header_size, uint64_t file_size) {
  LOOM_CHECK_INPUT(file_size > 0, path, ": empty file (0 bytes); a token shard starts with a ", kHeaderBytes,
                   "-byte header; ", kRepairHint);
  LOOM_CHECK_INPUT(file_size >= kHeaderBytes, path, ": truncated: a token shard starts with a ", kHeaderBytes,
                   "-byte header but the file has ", file_size, " bytes; ", kRepairHint);
  LOOM_CHECK(header_size >= kHeaderBytes, "parseShardHeader needs the whole header, got ", header_size, " bytes");
  const int32_t magic = readInt32(header);
  const int32_t version = readInt32(header + 4);
  const int64_t count = readInt32(header + 8);
  LOOM_CHECK_INPUT(magic == kShardMagic, path, ": not a token shard: header[0] (magic) is ", magic, ", expected ",
                   kShardMagic, "; ", kRepairHint);
  LOOM_CHECK_INPUT(version == kShardVersion, path, ": unsupported shard version ", version, " (header[1]), expected ",
                   kShardVersion, " (uint16 tokens); ", kRepairHint);
  LOOM_CHECK_INPUT(count >= 1, path, ": the header announces ", count, " tokens (header[2]), expected at least 1; ",
                   kRepairHint);
  const uint64_t expected = kHeaderBytes + 2 * static_cast<uint64_t>(count);
  LOOM_CHECK_INPUT(file_size >= expected, path, ": truncated: the header announces ", count, " tokens (", expected,
                   " bytes) but the file has ", file_size, " bytes; ", kRepairHint);
  LOOM_CHECK_INPUT(file_size == expected, path, ": size mismatch: the header announces ", count, " tokens (", expected,
                   " bytes) but the file has ", file_size, " bytes (", file_size - expected, " extra); ", kRepairHint);
  return count;
}

std::vector<int64_t> parseDocumentIndex(const std::string& path, const uint8_t* bytes, size_t size,
                                        int64_t token_count) {
  LOOM_CHECK_INPUT(size > 0, path, ": empty file (0 bytes); a document index starts with a ", kHeaderBytes,
                   "-byte header; delete it (the index is optional) or ", kRepairHint);
  LOOM_CHECK_INPUT(size >= kHeaderBytes, path, ": truncated: a document index starts with a ", kHeaderBytes,
                   "-byte header but the file has ", size, " bytes; ", kRepairHint);
  const int32_t magic = readInt32(bytes);
  const int32_t version = readInt32(bytes + 4);
  const int64_t count = readInt32(bytes + 8);
  LOOM_CHECK_INPUT(magic == kIndexMagic, path, ": not a document index: header[0] (magic) is ", magic, ", expected ",
                   kIndexMagic, "; ", kRepairHint);
  LOOM_CHECK_INPUT(version == kIndexVersion, path, ": unsupported document index version ", version,
                   " (header[1]), expected ", kIndexVersion, "; ", kRepairHint);
  LOOM_CHECK_INPUT(count >= 1, path, ": the header announces ", count, " documents (header[2]), expected at least 1; ",
                   kRepairHint);
  const uint64_t expected = kHeaderBytes + 8 * (static_cast<uint64_t>(count) + 1);
  LOOM_CHECK_INPUT(size == expected, path, ": size mismatch: the header announces ", count, " documents (", expected,
                   " bytes with ", count + 1, " offsets) but the file has ", size, " bytes; ", kRepairHint);
  std::vector<int64_t> offsets(static_cast<size_t>(count) + 1);
  for (size_t d = 0; d < offsets.size(); ++d) offsets[d] = readInt64(bytes + kHeaderBytes + 8 * d);
  LOOM_CHECK_INPUT(offsets[0] == 0, path, ": offsets[0] is ", offsets[0], ", expected 0; ", kRepairHint);
  for (size_t d = 1; d < offsets.size(); ++d) {
    LOOM_CHECK_INPUT(offsets[d] > offsets[d - 1], path, ": offsets are not increasing: offsets[", d, "] = ", offsets[d],
                     " after offsets[", d - 1, "] = ", offsets[d - 1],
                     " (every document holds at least its end-of-document token); ", kRepairHint);
  }
  LOOM_CHECK_INPUT(offsets.back() == token_count, path, ": offsets[", count, "] (end of the last document) is ",
                   offsets.back(), " but the shard holds ", token_count,
                   " tokens: the index belongs to another shard; ", kRepairHint);
  return offsets;
}

void checkDocumentEnds(const std::string& index_path, const uint16_t* tokens, const std::vector<int64_t>& offsets) {
  for (size_t d = 1; d < offsets.size(); ++d) {
    const uint16_t last = tokens[offsets[d] - 1];
    LOOM_CHECK_INPUT(last == kEodToken, index_path, ": document ", d - 1, " (tokens [", offsets[d - 1], ", ",
                     offsets[d], ")) ends with token ", last, ", expected the end-of-document token ", kEodToken,
                     ": the index does not match its shard; ", kRepairHint);
  }
}

std::vector<int64_t> documentsFromTokens(const uint16_t* tokens, int64_t token_count) {
  std::vector<int64_t> offsets{0};
  for (int64_t i = 0; i < token_count; ++i) {
    if (tokens[i] == kEodToken && i + 1 < token_count) offsets.push_back(i + 1);
  }
  if (token_count > 0) offsets.push_back(token_count);
  return offsets;
}

std::string encodeShardHeader(int64_t token_count) {
  LOOM_CHECK(token_count >= 1 && token_count <= kMaxShardTokens, "shard token count ", token_count, " out of range");
  return encodeHeader(kShardMagic, kShardVersion, token_count);
}

std::string encodeDocumentIndex(const std::vector<int64_t>& offsets) {
  LOOM_CHECK(offsets.size() >= 2 && offsets.size() - 1 <= static_cast<size_t>(INT32_MAX),
             "document index needs 1 to INT32_MAX documents, got ", offsets.size(), " offsets");
  std::string out = encodeHeader(kIndexMagic, kIndexVersion, static_cast<int64_t>(offsets.size() - 1));
  out.reserve(kHeaderBytes + 8 * offsets.size());
  for (int64_t offset : offsets) appendLittleEndian(out, static_cast<uint64_t>(offset), 8);
  return out;
}

}  // namespace loom::data
