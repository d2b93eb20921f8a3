// loom's error contract (ARCHITECTURE.md §2).
//
// Library code throws; only the main()s turn exceptions into exit codes. The
// types say what the caller may do next:
//   InputError     bad config, data, weights or arguments: fix the input, never restart;
//   PeerLostError  a rank disappeared: the job may recover or be restarted;
//   anything else  an internal error (a bug or an environment failure).
// Messages state what failed, with the values, and what to do.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <cerrno>
#include <string>

namespace loom {

/// Bad user input: a config, data file, weights file, path or argument that can
/// never work as given. Restarting the job would fail the same way.
class InputError : public c10::ValueError {
  using c10::ValueError::ValueError;
};

/// A peer rank was lost (died, hung past its timeout, or became unreachable).
class PeerLostError : public c10::Error {
  using c10::Error::Error;
};

/// Process exit codes, shared by every loom binary and documented in README.md.
enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,  ///< a bug or an environment failure; logs have the backtrace
  kBadInput = 2,  ///< bad config or input: do not restart, fix the input
  kPeerLost = 3,  ///< a peer was lost: restarting may succeed
};

/// The message of an exception without c10's backtrace (for user-facing errors).
std::string errorMessage(const std::exception& e);

/// Maps an exception to the exit code its type stands for.
ExitCode exitCodeFor(const std::exception& e);

/// "<what>: <strerror(errnum)>", for messages about failed system calls.
std::string describeErrno(const std::string& what, int errnum);

}  // namespace loom

#define LOOM_THROW(error_type, ...) \
  throw error_type({__func__, __FILE__, static_cast<uint32_t>(__LINE__)}, ::c10::str(__VA_ARGS__))

/// Throws InputError with the concatenated message when `cond` is false.
#define LOOM_CHECK_INPUT(cond, ...)                \
  do {                                             \
    if (C10_UNLIKELY(!(cond))) {                   \
      LOOM_THROW(::loom::InputError, __VA_ARGS__); \
    }                                              \
  } while (false)

/// Throws c10::Error (internal) when `cond` is false: an invariant loom itself broke.
#define LOOM_CHECK(cond, ...) TORCH_CHECK(cond, __VA_ARGS__)
