// Routing of one worker stream (stdout or stderr): split into lines, each line
// written whole to the console with the "[rank N]:" prefix (one write() per line,
// so lines of different ranks never mix), to the rank's log file as written, and
// remembered in a short tail for the failure summary.
#pragma once

#include "runtime/core/unique_fd.h"

#include <cstddef>
#include <deque>
#include <string>

namespace loom::launcher {

/// A line longer than this is passed on in pieces of this size.
constexpr size_t kMaxLineBytes = 64 * 1024;

struct StreamTarget {
  std::string prefix;     ///< e.g. "[rank 3]: "
  int console_fd = -1;    ///< 1, 2, or -1 for no console copy (not owned)
  std::string file_path;  ///< created or truncated; empty for no file
  size_t tail_lines = 0;  ///< lines kept for tail()
};

class WorkerOutput {
 public:
  /// Throws InputError naming the path when the log file cannot be created.
  explicit WorkerOutput(const StreamTarget& target);

  /// Bytes as they arrive from the pipe, in any chunking.
  void append(const char* data, size_t size);
  /// Passes on a final line that had no newline (at end of stream).
  void finish();

  /// The last tail_lines complete lines, oldest first.
  const std::deque<std::string>& tail() const { return tail_; }

 private:
  void emit(const std::string& line);

  StreamTarget target_;
  UniqueFd file_;
  std::string pending_;
  std::deque<std::string> tail_;
};

/// Reads everything `fd` holds now into `output`. Returns false at end of stream.
bool drainInto(int fd, WorkerOutput& output);

}  // namespace loom::launcher
