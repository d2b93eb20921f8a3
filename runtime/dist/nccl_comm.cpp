#include "runtime/dist/nccl_comm.h"

#include "runtime/core/error.h"
#include "runtime/dist/nccl_check.h"

#include <thread>
#include <utility>

namespace loom::dist {
namespace {

constexpr std::chrono::microseconds kPollInterval{100};

[[noreturn]] void throwAborted(const char* what) {
  LOOM_THROW(c10::Error, "nccl ", what, ": the communicator was aborted");
}

// The work of one batch: waits for its event while watching for NCCL's asynchronous errors.
class NcclWork final : public BackendWork {
 public:
  NcclWork(std::shared_ptr<NcclComm> comm, std::shared_ptr<NcclBatch> batch)
      : comm_(std::move(comm)), batch_(std::move(batch)) {}

  bool waitFor(std::chrono::milliseconds timeout) override {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    comm_->ensureLaunched(batch_);
    if (batch_->error) std::rethrow_exception(batch_->error);
    while (true) {
      comm_->checkHealthy("wait");  // checked first: an aborted communicator's event says nothing about the data
      const cudaError_t status = cudaEventQuery(batch_->done);
      if (status == cudaSuccess) return true;
      if (status != cudaErrorNotReady) LOOM_DIST_CUDA_CHECK(status, "waiting for an NCCL operation");
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(kPollInterval);
    }
  }

  bool isCompleted() override {
    comm_->ensureLaunched(batch_);
    if (batch_->error) return true;
    try {
      comm_->checkHealthy("isCompleted");
    } catch (const std::exception&) {
      return true;  // failed: wait() reports why
    }
    return cudaEventQuery(batch_->done) != cudaErrorNotReady;
  }

 private:
  std::shared_ptr<NcclComm> comm_;
  std::shared_ptr<NcclBatch> batch_;
};

}  // namespace

void checkCudaDevice(int device) {
  int count = 0;
  LOOM_DIST_CUDA_CHECK(cudaGetDeviceCount(&count), "counting CUDA devices for the NCCL communicator");
  LOOM_CHECK_INPUT(device >= 0 && device < count, "nccl: CUDA device ", device, " does not exist; this machine has ",
                   count, " CUDA device(s)");
}

ncclDataType_t ncclDataTypeOf(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kChar:
      return ncclInt8;
    case at::kByte:
      return ncclUint8;
    case at::kBool:
      return ncclUint8;
    case at::kInt:
      return ncclInt32;
    case at::kLong:
      return ncclInt64;
    default:
      break;
  }
  LOOM_THROW(InputError, "nccl: ", type,
             " tensors are not supported; use Float, Double, Half, BFloat16, Char, Byte, Bool, Int or Long");
}

ncclRedOp_t ncclRedOpOf(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  return ncclSum;
}

CudaDeviceGuard::CudaDeviceGuard(int device) : device_(device) {
  LOOM_DIST_CUDA_CHECK(cudaGetDevice(&previous_), "current CUDA device");
  if (previous_ != device_) LOOM_DIST_CUDA_CHECK(cudaSetDevice(device_), "selecting CUDA device ", device_);
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (previous_ >= 0 && previous_ != device_) cudaSetDevice(previous_);
}

NcclBatch::~NcclBatch() {
  if (done != nullptr) cudaEventDestroy(done);
}

std::shared_ptr<NcclComm> NcclComm::create(const ncclUniqueId& id, int rank, int size, int device,
                                           std::chrono::milliseconds timeout) {
  checkCudaDevice(device);
  CudaDeviceGuard guard(device);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  LOOM_NCCL_CHECK(ncclCommInitRankConfig(&comm, size, id, rank, &config), nullptr, "creating rank ", rank, " of ", size,
                  " on CUDA device ", device);
  std::shared_ptr<NcclComm> self(
      new NcclComm(comm, rank, size, device, timeout));  // from here on, failures abort `comm`
  self->waitUntilReady(comm, "communicator creation (did every rank call it?)");
  self->finishSetup();
  return self;
}

NcclComm::NcclComm(ncclComm_t comm, int rank, int size, int device, std::chrono::milliseconds timeout)
    : timeout_(timeout), device_(device), rank_(rank), size_(size), comm_(comm) {}

void NcclComm::finishSetup() {
  CudaDeviceGuard guard(device_);
  LOOM_NCCL_CHECK(ncclCommUserRank(comm_, &rank_), comm_, "rank in the new communicator");
  LOOM_NCCL_CHECK(ncclCommCount(comm_, &size_), comm_, "size of the new communicator");
  LOOM_DIST_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "the communicator's stream");
  LOOM_DIST_CUDA_CHECK(cudaMalloc(&barrier_buffer_, sizeof(int32_t)), "the barrier's buffer");
  LOOM_DIST_CUDA_CHECK(cudaMemset(barrier_buffer_, 0, sizeof(int32_t)), "the barrier's buffer");
  std::lock_guard<std::mutex> lock(state_mutex_);
  ready_ = true;
}

NcclComm::~NcclComm() {
  // Errors are ignored here: a destructor cannot report them, and cleanup must not mask the first error.
  int previous = -1;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  if (!released_) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t finalized = ready_ && !aborted_ ? ncclCommFinalize(comm_) : ncclInvalidUsage;
    if (finalized == ncclSuccess || finalized == ncclInProgress) {
      const auto deadline = std::chrono::steady_clock::now() + timeout_;
      while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(kPollInterval);
      }
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  if (barrier_buffer_ != nullptr) cudaFree(barrier_buffer_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  if (previous >= 0) cudaSetDevice(previous);
}

cudaStream_t NcclComm::setComputeStream(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(launch_mutex_);
  return std::exchange(compute_stream_, stream);
}

std::unique_ptr<BackendWork> NcclComm::launch(NcclCall call, std::vector<at::Tensor> keep_alive) {
  auto batch = std::make_shared<NcclBatch>();
  batch->calls.push_back(std::move(call));
  batch->keep_alive = std::move(keep_alive);
  {
    std::lock_guard<std::mutex> lock(launch_mutex_);
    flushLocked();
    launchLocked(*batch);
  }
  return std::make_unique<NcclWork>(shared_from_this(), std::move(batch));
}

std::unique_ptr<BackendWork> NcclComm::defer(NcclCall call, std::vector<at::Tensor> keep_alive) {
  std::shared_ptr<NcclBatch> batch;
  {
    std::lock_guard<std::mutex> lock(launch_mutex_);
    if (!open_batch_) open_batch_ = std::make_shared<NcclBatch>();
    batch = open_batch_;
    batch->calls.push_back(std::move(call));
    for (at::Tensor& t : keep_alive) batch->keep_alive.push_back(std::move(t));
  }
  return std::make_unique<NcclWork>(shared_from_this(), std::move(batch));
}

void NcclComm::ensureLaunched(const std::shared_ptr<NcclBatch>& batch) {
  std::lock_guard<std::mutex> lock(launch_mutex_);
  if (!batch->launched) flushLocked();  // only the open batch is ever unlaunched
}

void NcclComm::flushLocked() {
  if (!open_batch_) return;
  std::shared_ptr<NcclBatch> batch = std::move(open_batch_);
  open_batch_.reset();
  launchLocked(*batch);
}

void NcclComm::launchLocked(NcclBatch& batch) {
  batch.launched = true;
  try {
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      if (aborted_) throwAborted("launch");
      CudaDeviceGuard guard(device_);
      // Order after the producer's queued work without blocking the host.
      cudaEvent_t produced = nullptr;
      LOOM_DIST_CUDA_CHECK(cudaEventCreateWithFlags(&produced, cudaEventDisableTiming), "ordering after compute");
      const cudaError_t recorded = cudaEventRecord(produced, compute_stream_);
      const cudaError_t waited = recorded == cudaSuccess ? cudaStreamWaitEvent(stream_, produced, 0) : recorded;
      cudaEventDestroy(produced);  // released once the wait is done
      LOOM_DIST_CUDA_CHECK(waited, "making the communication stream wait for the compute stream");
      LOOM_NCCL_CHECK(ncclGroupStart(), comm_, "starting a group of ", batch.calls.size(), " operation(s)");
      ncclResult_t result = ncclSuccess;
      for (const NcclCall& call : batch.calls) {
        result = call(comm_, stream_);
        if (result != ncclSuccess && result != ncclInProgress) break;
      }
      const ncclResult_t ended = ncclGroupEnd();  // always: it closes this thread's group even after a failure
      LOOM_NCCL_CHECK(result, comm_, "enqueueing an operation");
      LOOM_NCCL_CHECK(ended, comm_, "launching a group of ", batch.calls.size(), " operation(s)");
    }
    waitUntilReady(comm_, "launch");
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (aborted_) throwAborted("launch");
    CudaDeviceGuard guard(device_);
    LOOM_DIST_CUDA_CHECK(cudaEventCreateWithFlags(&batch.done, cudaEventDisableTiming), "completion event");
    LOOM_DIST_CUDA_CHECK(cudaEventRecord(batch.done, stream_), "recording the completion event");
  } catch (...) {
    batch.error = std::current_exception();
  }
  batch.calls.clear();
}

void NcclComm::waitUntilReady(ncclComm_t comm, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (true) {
    ncclResult_t state = ncclInProgress;
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      if (aborted_) throwAborted(what);
      LOOM_NCCL_CHECK(ncclCommGetAsyncError(comm, &state), comm, what);
    }
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) throwNcclError(state, comm, "ncclCommGetAsyncError", __FILE__, __LINE__, what);
    if (std::chrono::steady_clock::now() >= deadline) {
      LOOM_THROW(PeerLostError, "nccl ", what, " on rank ", rank_, " of ", size_, " did not finish within ",
                 timeout_.count(), " ms; a peer may be lost");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::shared_ptr<NcclComm> NcclComm::derive(
    const std::function<ncclResult_t(ncclComm_t parent, ncclComm_t* child)>& make, const char* what, bool poll_parent) {
  std::lock_guard<std::mutex> launch_lock(launch_mutex_);
  flushLocked();
  ncclComm_t child = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_mutex_);
    if (aborted_) throwAborted(what);
    CudaDeviceGuard guard(device_);
    LOOM_NCCL_CHECK(make(comm_, &child), comm_, what);
  }
  std::shared_ptr<NcclComm> derived;
  // Named by this rank until NCCL says where it landed; aborts `child` if anything below fails.
  if (child != nullptr) derived.reset(new NcclComm(child, rank_, size_, device_, timeout_));
  if (poll_parent) waitUntilReady(comm_, what);
  if (!derived) return nullptr;
  derived->waitUntilReady(child, what);
  derived->finishSetup();
  return derived;
}

void NcclComm::abort() {
  std::lock_guard<std::mutex> lock(state_mutex_);
  aborted_ = true;
  if (released_) return;
  released_ = true;
  ncclCommAbort(comm_);  // nothing to do about its failure: the communicator is unusable either way
}

void NcclComm::markAborted() {
  std::lock_guard<std::mutex> lock(state_mutex_);
  aborted_ = true;
}

void NcclComm::checkHealthy(const char* what) {
  std::lock_guard<std::mutex> lock(state_mutex_);
  if (aborted_) throwAborted(what);
  ncclResult_t state = ncclSuccess;
  LOOM_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state), comm_, what);
  if (state != ncclSuccess && state != ncclInProgress) {
    throwNcclError(state, comm_, "ncclCommGetAsyncError", __FILE__, __LINE__, c10::str(what, ": asynchronous error"));
  }
}

}  // namespace loom::dist
