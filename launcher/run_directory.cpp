#include "launcher/run_directory.h"

#include "runtime/core/error.h"
#include "runtime/core/file_util.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>

namespace loom::launcher {
namespace {

std::string makeUniqueDir(const std::string& pattern_prefix, const std::string& what) {
  std::string pattern = pattern_prefix + "XXXXXX";
  LOOM_CHECK_INPUT(::mkdtemp(pattern.data()) != nullptr, describeErrno("cannot create " + pattern, errno), " (", what,
                   ")");
  return pattern;
}

}  // namespace

RunDirectory::RunDirectory(const std::string& log_dir, const std::string& run_id) {
  if (!log_dir.empty()) {
    ensureWritableDir(log_dir, "--log-dir");
    path_ = makeUniqueDir(log_dir + "/" + run_id + "_", "--log-dir");
    return;
  }
  const char* tmp = std::getenv("TMPDIR");
  path_ = makeUniqueDir(std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/loom-launch-" + run_id + "-",
                        "the error-file directory under $TMPDIR");
  temporary_ = true;
}

RunDirectory::~RunDirectory() {
  if (temporary_) {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
}

std::string RunDirectory::rankDir(int attempt, int rank, const std::string& suffix) const {
  const std::string dir = path_ + "/attempt_" + std::to_string(attempt) + "/rank_" + std::to_string(rank) + suffix;
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  LOOM_CHECK_INPUT(!error, "cannot create the worker directory ", dir, ": ", error.message());
  return dir;
}

}  // namespace loom::launcher
