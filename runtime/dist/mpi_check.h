// LOOM_MPI_CHECK: wraps every MPI call (ARCHITECTURE.md §2, aesthetics.md §8.3).
//
// loom's MPI communicators set MPI_ERRORS_RETURN on their communicators, so a
// failing call returns a code instead of killing the process; this macro turns
// that code into a c10::Error carrying file:line, the call, MPI's own text and
// our context. Internal to runtime/dist (it includes <mpi.h>).
#pragma once

#include <c10/util/StringUtil.h>
#include <mpi.h>

#include <string>

namespace loom::dist {

/// MPI's text for an error code, e.g. "MPI_ERR_TRUNCATE: message truncated".
std::string mpiErrorString(int code);

/// Throws c10::Error "<file>:<line>: <expr> failed with <mpiErrorString(code)> (<context>)".
[[noreturn]] void throwMpiError(int code, const char* expr, const char* file, int line, const std::string& context);

}  // namespace loom::dist

/// Evaluates `expr` (an MPI call) once; unless it returns MPI_SUCCESS, throws
/// c10::Error whose message ends with the concatenated context arguments.
#define LOOM_MPI_CHECK(expr, ...)                                                                     \
  do {                                                                                                \
    const int loom_mpi_code = (expr);                                                                 \
    if (loom_mpi_code != MPI_SUCCESS) {                                                               \
      ::loom::dist::throwMpiError(loom_mpi_code, #expr, __FILE__, __LINE__, ::c10::str(__VA_ARGS__)); \
    }                                                                                                 \
  } while (false)
