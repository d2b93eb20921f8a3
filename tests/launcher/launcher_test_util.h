// Helpers for tests that run loom-launch as a real process: a launcher running
// in the background (so the test can signal it or start a second one), waits
// on files it writes, and small shell-script workers.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

namespace loom::launcher::test {

/// How long a test waits for something that normally takes well under a second
/// before failing instead of hanging (a guard, not a timing assertion).
constexpr std::chrono::seconds kPatience{60};

/// `/bin/sh -c "exec <command>"` with stdout and stderr appended to `log_path`
/// (or to separate files). pid() is then the launcher itself. A process still
/// running at destruction is killed with SIGKILL and reaped.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::string& command, const std::string& stdout_path, const std::string& stderr_path);
  BackgroundProcess(const std::string& command, const std::string& log_path)
      : BackgroundProcess(command, log_path, log_path) {}
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const;
  /// The exit code (128 + N for signal N), or nullopt if still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout = kPatience);

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

/// Polls until `path` exists and contains `needle`; false after `timeout`.
bool waitForText(const std::string& path, const std::string& needle, std::chrono::milliseconds timeout = kPatience);

/// Polls until a launcher log at `path` reports its store endpoint; returns the
/// port (throws after `timeout`).
int waitForStorePort(const std::string& path, std::chrono::milliseconds timeout = kPatience);

/// Writes an executable /bin/sh script `body` to `path`.
void writeScript(const std::string& path, const std::string& body);

/// True while a process with this pid exists (and is not a zombie).
bool processAlive(pid_t pid);

/// A TCP port that was free a moment ago (bound to port 0, then closed).
int freePort();

/// The test build's loom-launch.
std::string launcherBinary();

/// Number of lines of `text` containing `needle`.
int countLines(const std::string& text, const std::string& needle);

}  // namespace loom::launcher::test
