#include "parallel/cuda/nccl_settle.h"

#include "runtime/dist/nccl_check.h"

#include <thread>

namespace loom::parallel::cuda {

void settleNccl(ncclResult_t result, ncclComm_t comm, const char* what) {
  LOOM_NCCL_CHECK(result, comm, what);
  while (result == ncclInProgress) {
    std::this_thread::yield();
    LOOM_NCCL_CHECK(ncclCommGetAsyncError(comm, &result), comm, what);
    if (result != ncclSuccess && result != ncclInProgress) {
      dist::throwNcclError(result, comm, "ncclCommGetAsyncError", __FILE__, __LINE__, what);
    }
  }
}

}  // namespace loom::parallel::cuda
