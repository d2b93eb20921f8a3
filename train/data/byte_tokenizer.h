// loom's byte-level tokenizer: token t in [0, 256) is the byte t, and token 256
// (kEodToken) ends a document. Any UTF-8 (or binary) text round-trips exactly;
// the vocabulary needs at least kMinVocabSize = 257 entries (docs/data.md).
#pragma once

#include "train/data/shard_format.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loom::data {

inline constexpr int64_t kMinVocabSize = kEodToken + 1;

class ByteTokenizer {
 public:
  /// How decode() renders the end-of-document token.
  static constexpr std::string_view kEodMarker = "<|eod|>";

  /// One token per byte of `text`; never emits kEodToken.
  std::vector<uint16_t> encode(std::string_view text) const;

  /// Bytes for tokens in [0, 256), kEodMarker for kEodToken, and "<|id:N|>" for
  /// any other id N (a model with a padded vocabulary may sample one): never throws.
  std::string decode(const uint16_t* tokens, size_t count) const;
  std::string decode(const std::vector<uint16_t>& tokens) const;
  std::string decode(const std::vector<int64_t>& tokens) const;
};

}  // namespace loom::data
