#include "runtime/core/atomic_file_writer.h"

#include "runtime/core/error.h"
#include "runtime/core/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <random>
#include <utility>

namespace loom {
namespace {

std::string parentOf(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// A name no other writer (thread or process) picks: two writers of the same
// target must not share a temporary, or one would rename the other's bytes.
std::string temporaryName(const std::string& path, std::random_device& entropy) {
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(entropy());
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  std::random_device entropy;
  constexpr int kAttempts = 8;
  int err = 0;
  for (int attempt = 0; attempt < kAttempts && !fd_.valid(); ++attempt) {
    tmp_path_ = temporaryName(path_, entropy);
    fd_.reset(::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    err = errno;
    if (!fd_.valid() && err != EEXIST) break;
  }
  LOOM_CHECK_INPUT(fd_.valid(), "cannot write \"", path_, "\": creating its temporary \"", tmp_path_,
                   "\" failed: ", describeErrno("open", err), ". Check that the directory exists and is writable.");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
  fd_.reset();
  if (!tmp_path_.empty()) {
    ::unlink(tmp_path_.c_str());
    tmp_path_.clear();
  }
}

void AtomicFileWriter::write(const void* data, size_t size) {
  writeFully(static_cast<const char*>(data), size, -1);
}

void AtomicFileWriter::writeAt(uint64_t offset, const void* data, size_t size) {
  writeFully(static_cast<const char*>(data), size, static_cast<int64_t>(offset));
}

void AtomicFileWriter::writeFully(const char* bytes, size_t size, int64_t offset) {
  LOOM_CHECK(fd_.valid() && !committed_, "AtomicFileWriter: write on a closed writer for ", path_);
  while (size > 0) {
    const ssize_t n = offset < 0 ? ::write(fd_.get(), bytes, size) : ::pwrite(fd_.get(), bytes, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      const std::string tmp = tmp_path_;
      discard();
      LOOM_THROW(InputError, "cannot write \"", path_, "\" (temporary \"", tmp, "\"): ", describeErrno("write", err),
                 ". The previous file, if any, is unchanged.");
    }
    bytes += n;
    size -= static_cast<size_t>(n);
    if (offset >= 0) offset += n;
  }
}

void AtomicFileWriter::commit() {
  LOOM_CHECK(fd_.valid() && !committed_, "AtomicFileWriter::commit on a closed writer for ", path_);
  const int fd = fd_.release();
  const char* failed_call = nullptr;
  int err = 0;
  if (::fsync(fd) != 0) {
    failed_call = "fsync";
    err = errno;
  }
  if (::close(fd) != 0 && failed_call == nullptr) {
    failed_call = "close";
    err = errno;
  }
  if (failed_call != nullptr) {
    const std::string tmp = tmp_path_;
    discard();
    LOOM_THROW(InputError, "cannot write \"", path_, "\" (temporary \"", tmp, "\"): ", describeErrno(failed_call, err),
               ". The previous file, if any, is unchanged.");
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int rename_err = errno;
    const std::string tmp = tmp_path_;
    discard();
    LOOM_THROW(InputError, "cannot rename \"", tmp, "\" to \"", path_, "\": ", describeErrno("rename", rename_err),
               ". The previous file, if any, is unchanged.");
  }
  committed_ = true;
  tmp_path_.clear();
  syncDirectory(parentOf(path_));
}

}  // namespace loom
