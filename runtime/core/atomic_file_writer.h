// A file written in pieces that appears all at once: bytes go to a temporary
// file next to the target, and commit() fsyncs it and renames it over the
// target. Readers (and a crash at any moment) see the old file or the complete
// new one, never a mix or a prefix.
#pragma once

#include "runtime/core/unique_fd.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace loom {

class AtomicFileWriter {
 public:
  /// Creates the temporary file "<path>.tmp.<pid>.<random>" in the target's
  /// directory (same filesystem, so the final rename is atomic). Throws
  /// InputError naming the path when it cannot be created (e.g. the directory
  /// does not exist or is not writable).
  explicit AtomicFileWriter(std::string path);
  /// Without a successful commit(), removes the temporary and leaves the target
  /// untouched. Never throws.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  /// Appends `size` bytes. Throws InputError naming the file (e.g. disk full);
  /// the writer is then unusable and only its destructor remains to run.
  void write(const void* data, size_t size);

  /// Overwrites `size` bytes at `offset` (e.g. a header known only at the end)
  /// without moving where write() appends. Throws like write().
  void writeAt(uint64_t offset, const void* data, size_t size);

  /// fsyncs the temporary, renames it to path() and fsyncs the directory.
  /// Throws InputError on failure (the temporary is removed, the target kept).
  /// REQUIRES: called at most once, and no write() after it.
  void commit();

  const std::string& path() const { return path_; }

 private:
  void discard() noexcept;
  // Appends when offset < 0, else writes at offset.
  void writeFully(const char* bytes, size_t size, int64_t offset);

  std::string path_;
  std::string tmp_path_;
  UniqueFd fd_;
  bool committed_ = false;
};

}  // namespace loom
