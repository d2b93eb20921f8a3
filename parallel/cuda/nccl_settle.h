// Internal to parallel/cuda: one NCCL call made on a raw communicator, blocking
// or not, checked and settled before the next call or kernel is enqueued.
#pragma once

#include <nccl.h>

namespace loom::parallel::cuda {

/// Checks `result` of an NCCL call on `comm` (throws c10::Error with `what`). A
/// non-blocking communicator returns ncclInProgress while the call completes in
/// the background, and its kernels reach the stream only once
/// ncclCommGetAsyncError says ncclSuccess: polls until then, without a timeout.
void settleNccl(ncclResult_t result, ncclComm_t comm, const char* what);

}  // namespace loom::parallel::cuda
