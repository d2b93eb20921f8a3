#include "launcher/worker_output.h"

#include "runtime/core/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace loom::launcher {
namespace {

// A closed console or a full disk must not stop the job: output that cannot be
// written is dropped (the summary still has the tail).
void writeAll(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

WorkerOutput::WorkerOutput(const StreamTarget& target) : target_(target) {
  if (!target_.file_path.empty()) {
    file_.reset(::open(target_.file_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    LOOM_CHECK_INPUT(file_.valid(), describeErrno("cannot create the worker log " + target_.file_path, errno),
                     " (check --log-dir)");
  }
}

void WorkerOutput::append(const char* data, size_t size) {
  size_t start = 0;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      pending_.append(data + start, i - start);
      emit(pending_);
      pending_.clear();
      start = i + 1;
    } else if (pending_.size() + (i + 1 - start) >= kMaxLineBytes) {
      pending_.append(data + start, i + 1 - start);
      emit(pending_);
      pending_.clear();
      start = i + 1;
    }
  }
  pending_.append(data + start, size - start);
}

void WorkerOutput::finish() {
  if (!pending_.empty()) {
    emit(pending_);
    pending_.clear();
  }
}

void WorkerOutput::emit(const std::string& line) {
  if (target_.console_fd >= 0) writeAll(target_.console_fd, target_.prefix + line + "\n");
  if (file_.valid()) writeAll(file_.get(), line + "\n");
  if (target_.tail_lines > 0) {
    tail_.push_back(line);
    if (tail_.size() > target_.tail_lines) tail_.pop_front();
  }
}

bool drainInto(int fd, WorkerOutput& output) {
  // Bounded per call, so one chatty worker cannot keep the monitor loop from
  // reaping the others; poll() comes back at once while data remains.
  constexpr int kMaxReads = 64;
  char buffer[16384];
  for (int reads = 0; reads < kMaxReads; ++reads) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      output.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    output.finish();  // end of stream, or a read error that ends it
    return false;
  }
  return true;
}

}  // namespace loom::launcher
