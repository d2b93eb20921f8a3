// Fuzzes the token-shard and document-index parsers (train/data/shard_format.h)
// with arbitrary bytes. Bad bytes must raise loom::InputError; any other
// exception, a crash, a sanitizer report, or an accepted file that breaks the
// format's invariants is a bug.
//
// Each input is tried as a whole `.bin` and as a whole `.idx`; for the index
// the expected token count is taken from the input's last 8 bytes (the last
// offset), so that well-formed indexes reach the deep checks.
#include "runtime/core/error.h"
#include "train/data/shard_format.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

using namespace loom::data;

void require(bool invariant) {
  if (!invariant) __builtin_trap();
}

void fuzzShard(const uint8_t* data, size_t size) {
  int64_t count = 0;
  try {
    count = parseShardHeader("fuzz.bin", data, size, size);
  } catch (const loom::InputError&) {
    return;
  }
  require(count >= 1 && kHeaderBytes + 2 * static_cast<size_t>(count) == size);
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  std::memcpy(tokens.data(), data + kHeaderBytes, 2 * tokens.size());
  const std::vector<int64_t> docs = documentsFromTokens(tokens.data(), count);
  require(docs.size() >= 2 && docs.front() == 0 && docs.back() == count);
  for (size_t d = 1; d < docs.size(); ++d) {
    require(docs[d] > docs[d - 1]);
    if (d + 1 < docs.size()) require(tokens[docs[d] - 1] == kEodToken);
  }
}

void fuzzIndex(const uint8_t* data, size_t size) {
  int64_t token_count = 0;
  if (size >= 8) std::memcpy(&token_count, data + size - 8, 8);
  std::vector<int64_t> offsets;
  try {
    offsets = parseDocumentIndex("fuzz.idx", data, size, token_count);
  } catch (const loom::InputError&) {
    return;
  }
  require(offsets.size() >= 2 && offsets.front() == 0 && offsets.back() == token_count);
  require(size == kHeaderBytes + 8 * offsets.size());
  for (size_t d = 1; d < offsets.size(); ++d) require(offsets[d] > offsets[d - 1]);
  if (token_count > (int64_t{1} << 20)) return;
  // A shard whose documents end exactly where the index says passes; one with a
  // document end overwritten fails with InputError.
  std::vector<uint16_t> tokens(static_cast<size_t>(token_count), 7);
  for (size_t d = 1; d < offsets.size(); ++d) tokens[offsets[d] - 1] = kEodToken;
  checkDocumentEnds("fuzz.idx", tokens.data(), offsets);
  tokens[offsets[1] - 1] = 7;
  bool rejected = false;
  try {
    checkDocumentEnds("fuzz.idx", tokens.data(), offsets);
  } catch (const loom::InputError&) {
    rejected = true;
  }
  require(rejected);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzzShard(data, size);
  fuzzIndex(data, size);
  return 0;
}
