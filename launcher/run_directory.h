// Where worker log files and error files go.
//
// With --log-dir DIR: DIR/<run-id>_<random>/attempt_<k>/rank_<N>/{stdout.log,
// stderr.log,error.json}, kept (the random suffix, as torchrun's, keeps reruns of
// the same run id apart). Without: a temporary directory for the error files
// only, removed when the launcher exits.
#pragma once

#include <string>

namespace loom::launcher {

class RunDirectory {
 public:
  /// Throws InputError naming --log-dir when it cannot be created or written.
  RunDirectory(const std::string& log_dir, const std::string& run_id);
  ~RunDirectory();
  RunDirectory(const RunDirectory&) = delete;
  RunDirectory& operator=(const RunDirectory&) = delete;

  const std::string& path() const { return path_; }
  bool keepsLogs() const { return !temporary_; }

  /// Creates and returns attempt_<attempt>/rank_<rank><suffix> (elastic mode
  /// names a replacement worker's directory rank_<rank>_id<id>).
  std::string rankDir(int attempt, int rank, const std::string& suffix = "") const;

 private:
  std::string path_;
  bool temporary_ = false;
};

}  // namespace loom::launcher
