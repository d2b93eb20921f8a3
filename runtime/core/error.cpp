#include "runtime/core/error.h"

#include <cstring>

namespace loom {

std::string errorMessage(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    return c10_error->what_without_backtrace();
  }
  return e.what();
}

ExitCode exitCodeFor(const std::exception& e) {
  if (dynamic_cast<const InputError*>(&e) != nullptr) {
    return ExitCode::kBadInput;
  }
  if (dynamic_cast<const PeerLostError*>(&e) != nullptr) {
    return ExitCode::kPeerLost;
  }
  return ExitCode::kInternal;
}

std::string describeErrno(const std::string& what, int errnum) {
  return what + ": " + std::strerror(errnum);
}

}  // namespace loom
