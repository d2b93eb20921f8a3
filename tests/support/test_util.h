// Helpers shared by loom's tests: scratch directories, running loom's binaries
// as real subprocesses, and small file utilities.
#pragma once

#include <string>
#include <vector>

namespace loom::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  /// path() + "/" + name
  std::string file(const std::string& name) const;

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  ///< the process's exit status; 128 + N when killed by signal N
  std::string output;  ///< stdout and stderr, interleaved
};

/// Runs `command` through /bin/sh and captures its combined output.
CommandResult runCommand(const std::string& command);

/// Absolute path of a binary built by this build tree (e.g. "loom-train").
std::string loomBinary(const std::string& name);

/// Absolute path inside the source tree (e.g. "configs/tiny.pbtxt").
std::string sourcePath(const std::string& relative);

void writeTextFile(const std::string& path, const std::string& text);
std::string readTextFile(const std::string& path);

/// Shell-quotes `arg` with single quotes.
std::string shellQuote(const std::string& arg);

/// Every regular file below `dir` with its size and modification time, one per
/// line, sorted: two listings compare equal when nothing was written.
std::string snapshotTree(const std::string& dir);

}  // namespace loom::test
