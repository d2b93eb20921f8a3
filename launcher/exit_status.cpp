#include "launcher/exit_status.h"

#include <sys/wait.h>

#include <csignal>

namespace loom::launcher {

ExitStatus ExitStatus::fromWaitStatus(int status) {
  ExitStatus result;
  if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    result.code = WEXITSTATUS(status);
  }
  return result;
}

std::string describeExit(const ExitStatus& status) {
  return status.signaled ? "was killed by " + signalName(status.signal)
                         : "exited with code " + std::to_string(status.code);
}

std::string signalName(int signal) {
  switch (signal) {
    case SIGHUP:
      return "SIGHUP";
    case SIGINT:
      return "SIGINT";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGILL:
      return "SIGILL";
    case SIGTRAP:
      return "SIGTRAP";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGKILL:
      return "SIGKILL";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGUSR2:
      return "SIGUSR2";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGALRM:
      return "SIGALRM";
    case SIGTERM:
      return "SIGTERM";
    case SIGXCPU:
      return "SIGXCPU";
    case SIGXFSZ:
      return "SIGXFSZ";
    default:
      return "SIG" + std::to_string(signal);
  }
}

std::string exitHint(const ExitStatus& status) {
  if (status.signaled) {
    switch (status.signal) {
      case SIGKILL:
        return "SIGKILL is often the OOM killer (check dmesg or the job's memory limit)";
      case SIGABRT:
        return "SIGABRT is an abort, e.g. a failed check or a watchdog (see the rank's stderr)";
      case SIGSEGV:
        return "SIGSEGV is a segmentation fault: a bug or corrupt memory (run the rank under gdb)";
      case SIGBUS:
        return "SIGBUS often means a truncated memory-mapped file or a full /dev/shm";
      case SIGFPE:
        return "SIGFPE is an arithmetic fault such as an integer division by zero";
      case SIGILL:
        return "SIGILL: an instruction this CPU lacks (a binary built for another machine?)";
      case SIGTERM:
        return "SIGTERM came from outside loom-launch (a scheduler or a kill)";
      case SIGPIPE:
        return "SIGPIPE: the rank wrote to a closed pipe or socket";
      case SIGXCPU:
        return "SIGXCPU: the CPU-time limit (ulimit -t) was reached";
      default:
        return "";
    }
  }
  switch (status.code) {
    case 2:
      return "exit code 2 is loom's 'bad config or input': fix it; restarting would fail the same way";
    case 3:
      return "exit code 3 is loom's 'a peer was lost': see the other ranks' failures";
    case 126:
      return "exit code 126: the program is not executable";
    case 127:
      return "exit code 127: command not found (a script's interpreter or a command it runs)";
    default:
      return "";
  }
}

}  // namespace loom::launcher
