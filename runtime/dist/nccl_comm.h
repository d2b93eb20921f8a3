// One NCCL communicator in non-blocking mode, with its device, its stream and
// its lifetime (internal to runtime/dist; NcclCommunicator is the public face).
//
// Non-blocking mode (config.blocking = 0) is what lets every step be bounded
// by loom's timeout: creation, split and shrink return at once and are polled
// with ncclCommGetAsyncError, and ncclCommAbort can stop a communicator whose
// peer is lost. The price: after a call returns ncclInProgress, no other call
// may be issued on the communicator until the poll says ncclSuccess, and the
// kernels are only on the stream then. Launches are therefore serialised
// (launch_mutex_) and polled before their completion event is recorded.
#pragma once

#include "runtime/dist/communicator.h"

#include <c10/core/ScalarType.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace loom::dist {

/// Throws InputError when `device` is not a CUDA device of this machine, and
/// the CUDA error when CUDA cannot count its devices (no driver, no GPU).
void checkCudaDevice(int device);

ncclDataType_t ncclDataTypeOf(at::ScalarType type);  ///< throws InputError for types NCCL lacks
ncclRedOp_t ncclRedOpOf(ReduceOp op);

/// Makes `device` the calling thread's current device for the guard's lifetime.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
  int device_;
};

/// One NCCL call to put on the communicator's stream.
using NcclCall = std::function<ncclResult_t(ncclComm_t comm, cudaStream_t stream)>;

/// Calls launched together between ncclGroupStart and ncclGroupEnd, and the
/// event that marks their end. Fields are written under NcclComm's launch lock
/// and immutable once `launched` is true.
struct NcclBatch {
  NcclBatch() = default;
  ~NcclBatch();
  NcclBatch(const NcclBatch&) = delete;
  NcclBatch& operator=(const NcclBatch&) = delete;

  std::vector<NcclCall> calls;
  std::vector<at::Tensor> keep_alive;  ///< buffers NCCL uses, kept until the batch is gone
  bool launched = false;
  cudaEvent_t done = nullptr;  ///< recorded on the stream after the calls
  std::exception_ptr error;    ///< why the launch failed
};

class NcclComm : public std::enable_shared_from_this<NcclComm> {
 public:
  /// ncclCommInitRankConfig for `rank` of `size` on `device`, polled until ready.
  /// Throws PeerLostError when not every rank joined within `timeout`.
  static std::shared_ptr<NcclComm> create(const ncclUniqueId& id, int rank, int size, int device,
                                          std::chrono::milliseconds timeout);
  /// Finalises and destroys the communicator (aborts it if that does not
  /// finish within the timeout); only releases it after abort(). Never throws.
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  cudaStream_t stream() const { return stream_; }
  void* barrierBuffer() const { return barrier_buffer_; }

  /// Launched work first waits for what was queued on `stream` (default: the
  /// legacy default stream, which is libtorch's unless the caller switched).
  /// Returns the stream it replaces.
  cudaStream_t setComputeStream(cudaStream_t stream);

  /// Launches `call` now (after any deferred point-to-point calls).
  std::unique_ptr<BackendWork> launch(NcclCall call, std::vector<at::Tensor> keep_alive);
  /// Adds a point-to-point `call` to the open batch. The batch is launched as
  /// one NCCL group before the next launch or when one of its works is waited
  /// on or polled, so a ring of sends and receives cannot deadlock.
  std::unique_ptr<BackendWork> defer(NcclCall call, std::vector<at::Tensor> keep_alive);
  /// Launches `batch` if it is still the open one (for its works).
  void ensureLaunched(const std::shared_ptr<NcclBatch>& batch);

  /// A communicator derived from this one by `make` (ncclCommSplit, ncclCommShrink),
  /// polled until ready; null when `make` yields none (NCCL_SPLIT_NOCOLOR).
  std::shared_ptr<NcclComm> derive(const std::function<ncclResult_t(ncclComm_t parent, ncclComm_t* child)>& make,
                                   const char* what, bool poll_parent);

  /// ncclCommAbort: pending and later operations fail. Idempotent, any thread.
  void abort();
  /// Pending and later operations fail, but the NCCL communicator is left for
  /// the destructor to abort (after ncclCommShrink with NCCL_SHRINK_ABORT).
  void markAborted();
  /// Throws when the communicator was aborted or NCCL reported an asynchronous
  /// error (a peer or the network failed).
  void checkHealthy(const char* what);

 private:
  NcclComm(ncclComm_t comm, int rank, int size, int device, std::chrono::milliseconds timeout);
  void finishSetup();
  void launchLocked(NcclBatch& batch);  // REQUIRES launch_mutex_
  void flushLocked();                   // REQUIRES launch_mutex_
  /// Polls `comm` (this one or one being derived) until it leaves ncclInProgress.
  void waitUntilReady(ncclComm_t comm, const char* what);

  const std::chrono::milliseconds timeout_;
  const int device_;
  int rank_ = 0;
  int size_ = 1;
  cudaStream_t stream_ = nullptr;
  void* barrier_buffer_ = nullptr;

  std::mutex launch_mutex_;                // one launch, flush or derivation at a time
  std::shared_ptr<NcclBatch> open_batch_;  // guarded by launch_mutex_
  cudaStream_t compute_stream_ = nullptr;  // guarded by launch_mutex_

  std::mutex state_mutex_;  // held around every NCCL call on comm_, so abort() never races one
  ncclComm_t comm_;
  bool ready_ = false;     // guarded by state_mutex_
  bool aborted_ = false;   // guarded by state_mutex_
  bool released_ = false;  // ncclCommAbort was called; guarded by state_mutex_
};

}  // namespace loom::dist
