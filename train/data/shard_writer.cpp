#include "train/data/shard_writer.h"

#include "runtime/core/error.h"
#include "runtime/core/file_util.h"
#include "train/data/shard_format.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace loom::data {
namespace {

constexpr size_t kFlushBytes = size_t{1} << 20;

}  // namespace

// A file written under a temporary name beside its final path; removed on
// destruction unless renamed into place.
class ShardWriter::TempFile {
 public:
  explicit TempFile(std::string final_path)
      : final_path_(std::move(final_path)), tmp_path_(final_path_ + ".tmp." + std::to_string(::getpid())) {
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    LOOM_CHECK_INPUT(fd_ >= 0, "cannot create \"", tmp_path_, "\" (for ", final_path_,
                     "): ", describeErrno("open", errno), ". Choose a directory you can write to.");
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(tmp_path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const char* data, size_t size) { writeAt(data, size, -1); }

  /// Overwrites bytes at `offset` without moving the append position.
  void overwrite(uint64_t offset, const std::string& bytes) {
    writeAt(bytes.data(), bytes.size(), static_cast<off_t>(offset));
  }

  /// fsync + close: after this the bytes survive a crash.
  void sync() {
    const int fd = fd_;
    fd_ = -1;
    if (::fsync(fd) != 0) {
      const int err = errno;
      ::close(fd);
      fail("fsync", err);
    }
    if (::close(fd) != 0) fail("close", errno);
  }

  void renameIntoPlace() {
    LOOM_CHECK(fd_ < 0, "rename before sync of ", tmp_path_);
    LOOM_CHECK_INPUT(::rename(tmp_path_.c_str(), final_path_.c_str()) == 0, "cannot rename \"", tmp_path_, "\" to \"",
                     final_path_, "\": ", describeErrno("rename", errno));
    renamed_ = true;
  }

 private:
  // Appends when offset < 0, else writes at offset.
  void writeAt(const char* data, size_t size, off_t offset) {
    size_t done = 0;
    while (done < size) {
      const ssize_t n = offset < 0 ? ::write(fd_, data + done, size - done)
                                   : ::pwrite(fd_, data + done, size - done, offset + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail("write", errno);
      done += static_cast<size_t>(n);
    }
  }

  [[noreturn]] void fail(const char* what, int err) const {
    LOOM_THROW(InputError, "cannot write \"", tmp_path_, "\" (for ", final_path_, "): ", describeErrno(what, err),
               ". Check free disk space and permissions.");
  }

  std::string final_path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool renamed_ = false;
};

ShardWriter::ShardWriter(std::string shard_path)
    : path_(std::move(shard_path)), bin_(std::make_unique<TempFile>(path_)), offsets_{0} {
  const std::string placeholder(kHeaderBytes, '\0');  // the real header is written by finish()
  bin_->write(placeholder.data(), placeholder.size());
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::addDocument(const std::vector<uint16_t>& document, const std::string& source) {
  LOOM_CHECK(bin_ != nullptr, "ShardWriter::addDocument after finish() on ", path_);
  const int64_t total = tokens() + static_cast<int64_t>(document.size()) + 1;
  LOOM_CHECK_INPUT(total <= kMaxShardTokens, path_, ": adding \"", source, "\" (", document.size(),
                   " tokens + end-of-document) makes ", total, " tokens, more than a shard holds (", kMaxShardTokens,
                   ", the header's int32 count); split the inputs over several shards");
  for (uint16_t token : document) {
    buffer_.push_back(static_cast<char>(token & 0xFF));
    buffer_.push_back(static_cast<char>(token >> 8));
  }
  buffer_.push_back(static_cast<char>(kEodToken & 0xFF));
  buffer_.push_back(static_cast<char>(kEodToken >> 8));
  offsets_.push_back(total);
  if (buffer_.size() >= kFlushBytes) {
    bin_->write(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
}

void ShardWriter::finish() {
  LOOM_CHECK(bin_ != nullptr, "ShardWriter::finish called twice on ", path_);
  LOOM_CHECK_INPUT(documents() >= 1, path_, ": no documents to write; a shard holds at least one document");
  bin_->write(buffer_.data(), buffer_.size());
  buffer_.clear();
  bin_->overwrite(0, encodeShardHeader(tokens()));
  bin_->sync();

  const std::string index_path = indexPathFor(path_);
  TempFile index(index_path);
  const std::string index_bytes = encodeDocumentIndex(offsets_);
  index.write(index_bytes.data(), index_bytes.size());
  index.sync();

  LOOM_CHECK_INPUT(::unlink(index_path.c_str()) == 0 || errno == ENOENT, "cannot remove the old index \"", index_path,
                   "\": ", describeErrno("unlink", errno));
  bin_->renameIntoPlace();
  index.renameIntoPlace();
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  syncDirectory(parent.empty() ? std::string(".") : parent.string());
  bin_.reset();
}

}  // namespace loom::data
