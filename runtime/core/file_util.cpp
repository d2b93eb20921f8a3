#include "runtime/core/file_util.h"

#include "runtime/core/atomic_file_writer.h"
#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace loom {
namespace {

namespace fs = std::filesystem;

}  // namespace

bool pathExists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

void ensureWritableDir(const std::string& dir, const std::string& what) {
  LOOM_CHECK_INPUT(!dir.empty(), what, " is empty: set it to a directory loom may write to");
  std::error_code ec;
  fs::create_directories(dir, ec);
  LOOM_CHECK_INPUT(!ec, what, " (\"", dir, "\") cannot be created: ", ec.message(),
                   ". Choose a directory you can write to.");
  LOOM_CHECK_INPUT(fs::is_directory(dir, ec), what, " (\"", dir, "\") exists but is not a directory");
  const std::string probe = (fs::path(dir) / (".loom-write-probe." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LOOM_CHECK_INPUT(fd >= 0, what, " (\"", dir, "\") is not writable: ", describeErrno("open", errno),
                   ". Fix its permissions or choose another directory.");
  ::close(fd);
  ::unlink(probe.c_str());
}

void syncDirectory(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) {
    ::fsync(fd.get());  // best effort: some filesystems refuse fsync on directories
  }
}

void writeFileAtomically(const std::string& path, const std::string& bytes) {
  AtomicFileWriter writer(path);
  writer.write(bytes.data(), bytes.size());
  writer.commit();
}

std::string readFile(const std::string& path, const std::string& what) {
  std::error_code ec;
  LOOM_CHECK_INPUT(fs::exists(path, ec), what, " \"", path, "\" does not exist");
  LOOM_CHECK_INPUT(fs::is_regular_file(path, ec), what, " \"", path, "\" is not a regular file");
  std::ifstream in(path, std::ios::binary);
  LOOM_CHECK_INPUT(in.good(), what, " \"", path, "\" cannot be opened: ", describeErrno("open", errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  LOOM_CHECK_INPUT(!in.bad(), what, " \"", path, "\" cannot be read: ", describeErrno("read", errno));
  return buffer.str();
}

}  // namespace loom
