#include "parallel/cuda/nccl_settle.h"

#include "runtime/core/error.h"
#include "runtime/dist/nccl_check.h"

#include <thread>

namespace loom::parallel::cuda {

void settleNccl(ncclResult_t result, ncclComm_t comm, const char* what, std::chrono::milliseconds timeout) {
  LOOM_NCCL_CHECK(result, comm, what);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (result == ncclInProgress) {
    if (std::chrono::steady_clock::now() > deadline) {
      LOOM_THROW(PeerLostError, what, ": the NCCL call was still being enqueued after ", timeout.count(),
                 " ms (non-blocking communicator); abort the communicator and rebuild it");
    }
    std::this_thread::yield();
    LOOM_NCCL_CHECK(ncclCommGetAsyncError(comm, &result), comm, what);
    if (result != ncclSuccess && result != ncclInProgress) {
      dist::throwNcclError(result, comm, "ncclCommGetAsyncError", __FILE__, __LINE__, what);
    }
  }
}

}  // namespace loom::parallel::cuda
