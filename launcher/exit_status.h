// How a worker process ended, in the words users grep for: torchrun's exit-code
// convention (negative = killed by that signal), the signal's name, and a hint
// at the usual cause (ecosystem.md §1.5, §6.3).
#pragma once

#include <string>

namespace loom::launcher {

struct ExitStatus {
  int code = 0;    ///< exit code when !signaled
  int signal = 0;  ///< terminating signal when signaled
  bool signaled = false;

  /// From a waitpid() status.
  static ExitStatus fromWaitStatus(int status);

  bool success() const { return !signaled && code == 0; }
  /// torchrun's "exitcode": the exit code, or minus the signal number.
  int torchrunCode() const { return signaled ? -signal : code; }
  /// The shell's convention, used as loom-launch's own exit code: code, or 128 + signal.
  int shellCode() const { return signaled ? 128 + signal : code; }
};

/// "exited with code 3" / "was killed by SIGKILL", for log lines.
std::string describeExit(const ExitStatus& status);

/// "SIGKILL" for 9; "SIG<n>" when the number has no standard name.
std::string signalName(int signal);

/// Why a process usually ends this way and what to check; empty when there is nothing useful to say.
std::string exitHint(const ExitStatus& status);

}  // namespace loom::launcher
