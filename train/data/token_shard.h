// A validated, memory-mapped token shard (format in shard_format.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::data {

/// Immutable after construction, so one TokenShard may be shared by loaders on
/// many threads. The mapping lives as long as the object.
class TokenShard {
 public:
  /// Maps and validates `path` for a model with `vocab_size` tokens: header and
  /// size (parseShardHeader), every token id < vocab_size, and the document
  /// index beside it when one exists (parseDocumentIndex, checkDocumentEnds);
  /// without an index, documents are the EOD-terminated runs.
  /// Throws InputError naming the file: missing or unreadable file, any format
  /// error, vocab_size outside [kMinVocabSize, 65536], a token id >= vocab_size
  /// (with its position), a corrupt index.
  TokenShard(std::string path, int64_t vocab_size);
  ~TokenShard();
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  static std::shared_ptr<const TokenShard> open(const std::string& path, int64_t vocab_size) {
    return std::make_shared<const TokenShard>(path, vocab_size);
  }

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  /// size() tokens, valid while this object lives.
  const uint16_t* tokens() const { return tokens_; }
  /// Start offset of every document plus a final entry = size().
  const std::vector<int64_t>& documents() const { return documents_; }
  int64_t documentCount() const { return static_cast<int64_t>(documents_.size()) - 1; }
  /// True when the documents came from a `.idx` file rather than EOD runs.
  bool hasIndex() const { return has_index_; }

 private:
  class Mapping;

  std::string path_;
  std::unique_ptr<Mapping> mapping_;
  const uint16_t* tokens_ = nullptr;
  int64_t size_ = 0;
  std::vector<int64_t> documents_;
  bool has_index_ = false;
};

}  // namespace loom::data
