#include "runtime/core/thread_env.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>

namespace loom {
namespace {

constexpr const char* kPolicyVariable = "OMP_WAIT_POLICY";
// Marks a process that loom re-executed, so logs can say who chose the policy.
constexpr const char* kMarkerVariable = "LOOM_SET_OMP_WAIT_POLICY";

}  // namespace

void reexecWithPassiveOpenMpWait(char** argv) {
  if (std::getenv(kPolicyVariable) != nullptr) {
    return;
  }
  ::setenv(kPolicyVariable, "PASSIVE", 1);
  ::setenv(kMarkerVariable, "1", 1);
  ::execv("/proc/self/exe", argv);
  // exec failed (no /proc?): carry on with libgomp's default policy.
  ::unsetenv(kPolicyVariable);
  ::unsetenv(kMarkerVariable);
}

std::string openMpWaitPolicyDescription() {
  const char* policy = std::getenv(kPolicyVariable);
  if (policy == nullptr) {
    return "OMP_WAIT_POLICY unset (libgomp default: idle workers spin)";
  }
  const bool ours = std::getenv(kMarkerVariable) != nullptr;
  return std::string("OMP_WAIT_POLICY=") + policy + (ours ? " (set by loom)" : " (from the environment)");
}

bool setBlasThreads(int threads) {
  using SetThreads = void (*)(int);
  const auto set_threads = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_threads == nullptr) return false;
  set_threads(threads);
  return true;
}

}  // namespace loom
