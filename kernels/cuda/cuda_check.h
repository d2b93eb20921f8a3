// LOOM_CUDA_CHECK: wraps every CUDA runtime call and kernel launch (ARCHITECTURE.md §2);
// LOOM_CUDA_REQUIRE: a launcher's argument check.
//
// The header needs only the CUDA runtime API, so .cu files compiled by nvcc never
// see c10's headers; the throwing function lives in cuda_check.cpp (host compiler).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace loom::kernels::cuda {

/// Throws c10::Error "<file>:<line>: <expr> failed: <cudaGetErrorName>: <cudaGetErrorString>".
[[noreturn]] void throwCudaError(cudaError_t status, const char* expr, const char* file, int line);

/// Throws loom::InputError "<file>:<line>: <message>": a launcher was given arguments it cannot run.
[[noreturn]] void throwInvalidLaunch(const std::string& message, const char* file, int line);

}  // namespace loom::kernels::cuda

/// Evaluates `expr` (a cudaError_t) once and throws c10::Error unless it is cudaSuccess.
/// After a kernel launch use LOOM_CUDA_CHECK(cudaGetLastError()).
#define LOOM_CUDA_CHECK(expr)                                                             \
  do {                                                                                    \
    const cudaError_t loom_cuda_status = (expr);                                          \
    if (loom_cuda_status != cudaSuccess) {                                                \
      ::loom::kernels::cuda::throwCudaError(loom_cuda_status, #expr, __FILE__, __LINE__); \
    }                                                                                     \
  } while (false)

/// Throws loom::InputError with `message` (a std::string with the values) unless `cond` holds.
#define LOOM_CUDA_REQUIRE(cond, message)                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      ::loom::kernels::cuda::throwInvalidLaunch((message), __FILE__, __LINE__); \
    }                                                                           \
  } while (false)
