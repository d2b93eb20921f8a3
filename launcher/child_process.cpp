#include "launcher/child_process.h"

#include "runtime/core/error.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace loom::launcher {
namespace {

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe makePipe() {
  int fds[2];
  LOOM_CHECK(::pipe2(fds, O_CLOEXEC) == 0, describeErrno("loom-launch: pipe2", errno));
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::vector<char*> cStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (auto& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Everything the child does between fork and exec. Only async-signal-safe calls:
// the launcher has other threads (the store's), whose locks the child inherits.
[[noreturn]] void execChild(const char* path, char* const* argv, char* const* envp, pid_t parent, int devnull, int out,
                            int err, int exec_error) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the launcher died before prctl took effect
  ::dup2(devnull, STDIN_FILENO);
  ::dup2(out, STDOUT_FILENO);
  ::dup2(err, STDERR_FILENO);
  // Descriptors the worker has no business holding (the store's sockets, other
  // workers' pipes); exec_error stays open until exec closes it (O_CLOEXEC).
  ::close_range(3, static_cast<unsigned>(exec_error) - 1, 0);
  ::close_range(static_cast<unsigned>(exec_error) + 1, ~0U, 0);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) ::signal(sig, SIG_DFL);
  ::execve(path, argv, envp);
  const int error = errno;
  [[maybe_unused]] const ssize_t n = ::write(exec_error, &error, sizeof(error));
  ::_exit(127);
}

void setNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  LOOM_CHECK(flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, describeErrno("loom-launch: fcntl", errno));
}

bool isExecutableFile(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::string resolveProgram(const std::string& program) {
  LOOM_CHECK_INPUT(!program.empty(), "no program to launch");
  if (program.find('/') != std::string::npos) {
    struct stat info {};
    LOOM_CHECK_INPUT(::stat(program.c_str(), &info) == 0, "cannot run ", program,
                     ": no such file (relative paths start at the launcher's working directory)");
    LOOM_CHECK_INPUT(isExecutableFile(program), "cannot run ", program,
                     ": not an executable file (chmod +x, or name its interpreter first)");
    return program;
  }
  const char* path_env = std::getenv("PATH");
  std::istringstream dirs(path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (isExecutableFile(candidate)) return candidate;
  }
  LOOM_THROW(InputError, "cannot run ", program, ": no executable of that name in PATH (give a path such as ./",
             program, " or build/bin/", program, ")");
}

ChildProcess::ChildProcess(const ChildSpec& spec) {
  std::string path = resolveProgram(spec.program);
  std::vector<std::string> argv_storage{spec.program};
  argv_storage.insert(argv_storage.end(), spec.args.begin(), spec.args.end());
  std::vector<std::string> env_storage = spec.env;
  const std::vector<char*> argv = cStrings(argv_storage);
  const std::vector<char*> envp = cStrings(env_storage);

  Pipe out = makePipe();
  Pipe err = makePipe();
  Pipe exec_error = makePipe();
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  LOOM_CHECK(devnull.valid(), describeErrno("loom-launch: open /dev/null", errno));

  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    execChild(path.c_str(), argv.data(), envp.data(), parent, devnull.get(), out.write.get(), err.write.get(),
              exec_error.write.get());
  }
  LOOM_CHECK(pid_ > 0, describeErrno("loom-launch: fork", errno));
  ::setpgid(pid_, pid_);  // also here, so the group exists before the first signalGroup()
  exec_error.write.reset();
  out.write.reset();
  err.write.reset();

  int child_errno = 0;
  ssize_t n = 0;
  do {
    n = ::read(exec_error.read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    LOOM_THROW(InputError, "cannot run ", path, ": ", std::strerror(child_errno));
  }
  setNonBlocking(out.read.get());
  setNonBlocking(err.read.get());
  stdout_ = std::move(out.read);
  stderr_ = std::move(err.read);
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && running()) {
    ::kill(-pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void ChildProcess::signalGroup(int signal) const {
  if (pid_ > 0 && running()) ::kill(-pid_, signal);
}

bool ChildProcess::tryReap() {
  if (!running()) return true;
  siginfo_t info{};
  // WNOWAIT: look without reaping, so the pid (and with it the group id) stays
  // ours while the leftovers are killed.
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) {
    return false;
  }
  ::kill(-pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = ExitStatus::fromWaitStatus(status);
  return true;
}

}  // namespace loom::launcher
