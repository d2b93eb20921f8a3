// One worker process: fork + exec in its own process group, stdout and stderr on
// pipes, stdin from /dev/null.
//
// Why a process group: signals reach the worker and everything it started (a
// shell script's children), and a Ctrl-C at the terminal reaches only the
// launcher, which then stops the workers in order. PR_SET_PDEATHSIG(SIGKILL)
// kills the worker if the launcher itself dies without stopping it, so a dead
// launcher leaves no worker behind. REQUIRES: spawn() is called from a thread
// that lives as long as the children (the kernel ties PDEATHSIG to the thread).
#pragma once

#include "launcher/exit_status.h"
#include "runtime/core/unique_fd.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace loom::launcher {

struct ChildSpec {
  std::string program;            ///< a path, or a name looked up in PATH
  std::vector<std::string> args;  ///< argv[1..]
  std::vector<std::string> env;   ///< the whole environment, "NAME=value"
};

class ChildProcess {
 public:
  /// Starts the child. Throws InputError naming the program when it cannot be
  /// found or executed, and c10::Error when a system call fails.
  explicit ChildProcess(const ChildSpec& spec);
  /// A child still running is killed (SIGKILL to its group) and reaped.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return !status_.has_value(); }
  const std::optional<ExitStatus>& status() const { return status_; }

  /// Non-blocking read ends; invalid once the owner closes them after EOF.
  UniqueFd& stdoutFd() { return stdout_; }
  UniqueFd& stderrFd() { return stderr_; }

  /// Sends `signal` to the child's process group; no-op once it was reaped.
  void signalGroup(int signal) const;

  /// Collects the exit status if the child has exited. When it has, whatever
  /// it left running in its process group is killed first, so no grandchild
  /// outlives its worker (and the output pipes reach EOF).
  bool tryReap();

 private:
  pid_t pid_ = -1;
  std::optional<ExitStatus> status_;
  UniqueFd stdout_;
  UniqueFd stderr_;
};

/// The executable `program` resolves to (PATH lookup when it has no '/').
/// Throws InputError naming it when none is found or it is not executable.
std::string resolveProgram(const std::string& program);

}  // namespace loom::launcher
