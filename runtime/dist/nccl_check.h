// LOOM_NCCL_CHECK and LOOM_DIST_CUDA_CHECK: wrap every NCCL and CUDA runtime call
// of the NCCL communicator (ARCHITECTURE.md §2, aesthetics.md §8.3). Internal to
// runtime/dist: runtime/ may not include kernels/cuda/cuda_check.h, so this
// layer has its own CUDA check under a name that cannot collide with it.
#pragma once

#include <c10/util/StringUtil.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

namespace loom::dist {

/// Throws c10::Error "<file>:<line>: <expr> failed with <ncclGetErrorString>:
/// <ncclGetLastError(comm)> (<context>)". `comm` may be null.
[[noreturn]] void throwNcclError(ncclResult_t result, ncclComm_t comm, const char* expr, const char* file, int line,
                                 const std::string& context);

/// Throws c10::Error "<file>:<line>: <expr> failed with <cudaGetErrorName>: <cudaGetErrorString> (<context>)".
[[noreturn]] void throwCudaError(cudaError_t status, const char* expr, const char* file, int line,
                                 const std::string& context);

}  // namespace loom::dist

/// Evaluates `expr` (an NCCL call on `comm`) once and throws unless it returns
/// ncclSuccess or ncclInProgress. ncclInProgress is not a failure: a non-blocking
/// communicator returns it while the call finishes in the background (poll with
/// ncclCommGetAsyncError before the next call).
#define LOOM_NCCL_CHECK(expr, comm, ...)                                                                          \
  do {                                                                                                            \
    const ncclResult_t loom_nccl_result = (expr);                                                                 \
    if (loom_nccl_result != ncclSuccess && loom_nccl_result != ncclInProgress) {                                  \
      ::loom::dist::throwNcclError(loom_nccl_result, (comm), #expr, __FILE__, __LINE__, ::c10::str(__VA_ARGS__)); \
    }                                                                                                             \
  } while (false)

/// Evaluates `expr` (a CUDA runtime call) once and throws unless it returns cudaSuccess.
#define LOOM_DIST_CUDA_CHECK(expr, ...)                                                                   \
  do {                                                                                                    \
    const cudaError_t loom_cuda_status = (expr);                                                          \
    if (loom_cuda_status != cudaSuccess) {                                                                \
      ::loom::dist::throwCudaError(loom_cuda_status, #expr, __FILE__, __LINE__, ::c10::str(__VA_ARGS__)); \
    }                                                                                                     \
  } while (false)
