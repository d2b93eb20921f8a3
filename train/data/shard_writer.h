// Streams documents into a token shard (`.bin`) and its document index (`.idx`),
// format in shard_format.h. Nothing is visible at the final paths until
// finish(): both files are written to temporaries in the same directory,
// fsynced and renamed, so a crash leaves the previous shard or the new one.
#pragma once

#include "runtime/core/atomic_file_writer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::data {

class ShardWriter {
 public:
  /// Starts `shard_path` (its index goes to indexPathFor(shard_path)).
  /// Throws InputError when the temporary file cannot be created.
  explicit ShardWriter(std::string shard_path);
  /// Without finish(), removes the temporaries and leaves the old files alone.
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  /// Appends one document: `document` followed by the end-of-document token.
  /// `source` names the document in errors. Throws InputError when the shard
  /// would exceed kMaxShardTokens or a write fails.
  void addDocument(const std::vector<uint16_t>& document, const std::string& source);

  /// Writes the header and the index and renames both into place. Replaces an
  /// existing shard: its old index is removed first, so a crash in between
  /// leaves a shard without index (valid) rather than a mismatched pair.
  /// Throws InputError when there is no document or a write fails.
  void finish();

  int64_t documents() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t tokens() const { return offsets_.back(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::unique_ptr<AtomicFileWriter> bin_;  // null after finish()
  std::string buffer_;                     // tokens not yet written, little-endian
  std::vector<int64_t> offsets_;           // document starts; back() = tokens so far
};

}  // namespace loom::data
