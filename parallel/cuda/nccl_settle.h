// Internal to parallel/cuda: one NCCL call made on a raw communicator, blocking
// or not, checked and settled before the next call or kernel is enqueued.
#pragma once

#include <nccl.h>

#include <chrono>

namespace loom::parallel::cuda {

/// Checks `result` of an NCCL call on `comm` (throws c10::Error with `what`). A
/// non-blocking communicator returns ncclInProgress while the call is enqueued
/// in the background, and its kernels reach the stream only once
/// ncclCommGetAsyncError says ncclSuccess: polls until then, up to `timeout`
/// (enqueueing, not the collective itself), then throws PeerLostError naming
/// `what`; the caller should abort the communicator.
void settleNccl(ncclResult_t result, ncclComm_t comm, const char* what,
                std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace loom::parallel::cuda
