// The launcher's signals as readable events (signalfd), so the monitor loop
// waits on worker output, worker exits and Ctrl-C in one poll() and no signal
// handler or process-global flag is needed.
//
// REQUIRES: constructed on the main thread before any other thread starts
// (the store's threads inherit the blocked mask, so the signals stay queued for
// the signalfd instead of being delivered to some thread). Children unblock
// them again before exec (child_process.cpp).
#pragma once

#include "runtime/core/unique_fd.h"

#include <signal.h>

#include <exception>

namespace loom::launcher {

/// Thrown out of waits (rendezvous, barriers) when the launcher was told to stop
/// before any worker ran; main turns it into exit code 128 + signal.
class StopRequested : public std::exception {
 public:
  explicit StopRequested(int signal) : signal_(signal) {}
  int signal() const { return signal_; }
  const char* what() const noexcept override { return "loom-launch: stopped by a signal"; }

 private:
  int signal_;
};

class SignalWatch {
 public:
  /// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGCHLD and opens a signalfd for them;
  /// ignores SIGPIPE (a closed console must not kill the launcher and orphan its workers).
  SignalWatch();
  /// Restores the previous signal mask.
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  /// Readable when a signal is pending; poll() it with the worker pipes.
  int fd() const { return fd_.get(); }

  /// Consumes every pending signal without blocking. Returns the first stop
  /// signal (SIGINT, SIGTERM, SIGHUP or SIGQUIT) among them, 0 when none;
  /// SIGCHLD only wakes the poll.
  int takeStopSignal();

 private:
  UniqueFd fd_;
  sigset_t previous_mask_{};
  struct sigaction previous_pipe_action_ {};
};

}  // namespace loom::launcher
