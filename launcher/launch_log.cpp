#include "launcher/launch_log.h"

#include <unistd.h>

#include <cerrno>

namespace loom::launcher {

void LaunchLog::block(const std::string& text) const {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // no console: nothing else to tell
    done += static_cast<size_t>(n);
  }
}

}  // namespace loom::launcher
