#include "launcher/signal_watch.h"

#include "runtime/core/error.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

namespace loom::launcher {

SignalWatch::SignalWatch() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&mask, sig);
  LOOM_CHECK(::pthread_sigmask(SIG_BLOCK, &mask, &previous_mask_) == 0, "loom-launch: pthread_sigmask failed");
  fd_.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  LOOM_CHECK(fd_.valid(), describeErrno("loom-launch: signalfd", errno));
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous_pipe_action_);
}

SignalWatch::~SignalWatch() {
  takeStopSignal();  // a signal still queued would otherwise be delivered on unblocking
  ::sigaction(SIGPIPE, &previous_pipe_action_, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

int SignalWatch::takeStopSignal() {
  int stop = 0;
  signalfd_siginfo info{};
  while (::read(fd_.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    const int sig = static_cast<int>(info.ssi_signo);
    if (stop == 0 && sig != SIGCHLD) stop = sig;
  }
  return stop;
}

}  // namespace loom::launcher
