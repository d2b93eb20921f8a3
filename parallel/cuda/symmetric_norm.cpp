#include "parallel/cuda/symmetric_norm.h"

#include "kernels/cuda/cuda_check.h"
#include "parallel/cuda/nccl_settle.h"
#include "runtime/core/error.h"
#include "runtime/dist/nccl_check.h"
#include "runtime/dist/nccl_recent_api.h"

#include <cuda.h>

#include <chrono>
#include <cstdint>
#include <thread>

namespace loom::parallel::cuda {
namespace {

/// Makes `device` current for the guard's lifetime.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    LOOM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) LOOM_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

/// CU_DEVICE_ATTRIBUTE_MULTICAST_SUPPORTED on an sm_90+ device, read through the
/// runtime's driver entry point (loom does not link libcuda; no driver: false).
bool multicastSupported(int device) {
  int major = 0;
  LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  if (major < 9) {
    return false;
  }
  void* entry = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
  // CUDA 12.5 added the versioned query and CUDA 13 removed the unversioned one.
#if CUDART_VERSION >= 12050
  const cudaError_t queried =
      cudaGetDriverEntryPointByVersion("cuDeviceGetAttribute", &entry, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t queried = cudaGetDriverEntryPoint("cuDeviceGetAttribute", &entry, cudaEnableDefault, &found);
#endif
  if (queried != cudaSuccess || found != cudaDriverEntryPointSuccess || entry == nullptr) {
    return false;
  }
  using GetAttribute = CUresult (*)(int*, CUdevice_attribute, CUdevice);
  int value = 0;
  // The runtime's device ordinals are the driver's CUdevice numbers within one process.
  const CUresult status = reinterpret_cast<GetAttribute>(entry)(&value, CU_DEVICE_ATTRIBUTE_MULTICAST_SUPPORTED,
                                                                static_cast<CUdevice>(device));
  return status == CUDA_SUCCESS && value != 0;
}

/// The minimum of `flag` over the ranks of `comm` (an int32 all-reduce), so that
/// every rank makes the same choice before a collective that depends on it.
bool agreeOnAllRanks(bool flag, ncclComm_t comm) {
  int32_t* device_flag = nullptr;
  cudaStream_t stream = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&device_flag, sizeof(int32_t)));
  int32_t value = flag ? 1 : 0;
  try {
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    LOOM_CUDA_CHECK(cudaMemcpyAsync(device_flag, &value, sizeof(value), cudaMemcpyHostToDevice, stream));
    settleNccl(ncclAllReduce(device_flag, device_flag, 1, ncclInt32, ncclMin, comm, stream), comm,
               "symmetric norm: agreeing on multicast");
    LOOM_CUDA_CHECK(cudaMemcpyAsync(&value, device_flag, sizeof(value), cudaMemcpyDeviceToHost, stream));
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    if (stream != nullptr) cudaStreamDestroy(stream);
    cudaFree(device_flag);
    throw;
  }
  cudaStreamDestroy(stream);
  cudaFree(device_flag);
  return value != 0;
}

/// For the destructor: waits out ncclInProgress for up to 60 s, ignores
/// failures (cleanup must not mask the first error, and a destructor cannot
/// report one; a communicator stuck that long is the caller's to abort).
void settleQuietly(ncclResult_t result, ncclComm_t comm) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (result == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm, &result) != ncclSuccess) return;
  }
}

}  // namespace

SymmetricNormWorkspace::SymmetricNormWorkspace(ncclComm_t comm, int64_t capacity_rows, int64_t hidden, NormDtype dtype,
                                               const SymmetricNormOptions& opts)
    : comm_(comm), capacity_rows_(capacity_rows), hidden_(hidden), dtype_(dtype), opts_(opts) {
  LOOM_CHECK_INPUT(comm != nullptr && capacity_rows >= 1 && hidden >= 8 && hidden % 8 == 0,
                   "symmetric norm workspace: needs a communicator, capacity_rows >= 1 (got ", capacity_rows,
                   ") and hidden a multiple of 8 (got ", hidden, "); use the reduce-scatter path otherwise");
  LOOM_CHECK_INPUT(opts.max_ctas >= 1 && opts.max_ctas <= kMaxSymmetricCtas, "symmetric norm workspace: max_ctas ",
                   opts.max_ctas, " is outside 1..", kMaxSymmetricCtas);
  // The device API is inline code over structs whose layout changes between
  // NCCL releases, so the library loaded must be the release loom was built with.
  const int version = dist::loadedNcclVersion();
  LOOM_CHECK_INPUT(version / 100 == NCCL_VERSION_CODE / 100, "symmetric norm workspace: the NCCL loaded is ", version,
                   " but loom's device code was built against NCCL ", NCCL_VERSION_CODE,
                   " and needs the same major.minor release; another libnccl.so.2 (PyTorch's?) was loaded first: put "
                   "that NCCL's lib directory first in LD_LIBRARY_PATH, or use the reduce-scatter path");
  LOOM_NCCL_CHECK(ncclCommCuDevice(comm, &device_), comm, "symmetric norm workspace: the communicator's device");
  int ranks = 0;
  LOOM_NCCL_CHECK(ncclCommCount(comm, &ranks), comm, "symmetric norm workspace: communicator size");
  const DeviceScope scope(device_);
  multicast_ = agreeOnAllRanks(opts.allow_multicast && ranks > 1 && multicastSupported(device_), comm);
  const size_t bytes = elementBytes(dtype) * static_cast<size_t>(capacity_rows * hidden);
  try {
    LOOM_NCCL_CHECK(ncclMemAlloc(&staging_, bytes), nullptr, "symmetric norm workspace: ncclMemAlloc of ", bytes,
                    " bytes");
    settleNccl(ncclCommWindowRegister(comm, staging_, bytes, &window_, NCCL_WIN_COLL_SYMMETRIC), comm,
               "symmetric norm workspace: ncclCommWindowRegister");
    // NCCL returns success and no window where symmetric memory is unsupported.
    LOOM_CHECK_INPUT(window_ != nullptr,
                     "symmetric norm workspace: NCCL registered no symmetric window (symmetric memory needs one node, "
                     "direct peer-to-peer access between all GPUs and NCCL_CUMEM_ENABLE on); use the reduce-scatter "
                     "path");
#ifdef NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER
    ncclDevCommRequirements reqs = NCCL_DEV_COMM_REQUIREMENTS_INITIALIZER;
#else
    ncclDevCommRequirements reqs = {};  // NCCL 2.28 has no initializer macro: all zero is "nothing"
#endif
    reqs.lsaBarrierCount = opts.max_ctas;
    reqs.lsaMultimem = multicast_;
    settleNccl(ncclDevCommCreate(comm, &reqs, &dev_comm_), comm, "symmetric norm workspace: ncclDevCommCreate");
    dev_comm_created_ = true;
    LOOM_CHECK_INPUT(dev_comm_.lsaSize == dev_comm_.nRanks, "symmetric norm workspace: only ", dev_comm_.lsaSize,
                     " of the ", dev_comm_.nRanks,
                     " ranks can load and store each other's memory (one NVLink domain is needed); use the "
                     "reduce-scatter path");
  } catch (...) {
    release();
    throw;
  }
}

SymmetricNormWorkspace::~SymmetricNormWorkspace() {
  release();
}

void SymmetricNormWorkspace::release() noexcept {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device_);
  cudaDeviceSynchronize();  // kernels launched on the caller's streams may still use the window
  if (dev_comm_created_) settleQuietly(ncclDevCommDestroy(comm_, &dev_comm_), comm_);
  if (window_ != nullptr) settleQuietly(ncclCommWindowDeregister(comm_, window_), comm_);
  if (staging_ != nullptr) ncclMemFree(staging_);
  dev_comm_created_ = false;
  window_ = nullptr;
  staging_ = nullptr;
  cudaSetDevice(previous);
}

SymmetricNormShape SymmetricNormWorkspace::launchShape(int64_t tokens) const {
  return detail::symmetricNormShape(shardRows(tokens, ranks()), hidden_, opts_.max_ctas);
}

void symmetricAllReduceAddRmsNorm(SymmetricNormWorkspace& ws, const FusedNormArgs& args, int64_t row_offset,
                                  cudaStream_t stream) {
  LOOM_CHECK_INPUT(args.hidden == ws.hidden_ && args.dtype == ws.dtype_, "symmetric norm: hidden ", args.hidden,
                   " / dtype ", static_cast<int>(args.dtype), " do not match the workspace's ", ws.hidden_, " / ",
                   static_cast<int>(ws.dtype_));
  LOOM_CHECK_INPUT(args.tokens >= 0 && row_offset >= 0 && row_offset + args.tokens <= ws.capacity_rows_,
                   "symmetric norm: rows [", row_offset, ", ", row_offset + args.tokens,
                   ") do not fit the workspace's ", ws.capacity_rows_, " rows");
  if (args.tokens == 0) {
    return;
  }
  const auto aligned = [](const void* p) { return p != nullptr && reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  LOOM_CHECK_INPUT(args.x && args.out && aligned(args.residual) && aligned(args.residual_out) && aligned(args.weight),
                   "symmetric norm: x and out must be device pointers, residual, residual_out and weight 16-byte "
                   "aligned ones");
  const size_t row_bytes = elementBytes(args.dtype) * static_cast<size_t>(args.hidden);
  const size_t call_bytes = row_bytes * static_cast<size_t>(args.tokens);
  char* rows = static_cast<char*>(ws.staging_) + row_bytes * static_cast<size_t>(row_offset);
  const DeviceScope scope(ws.device_);
  if (args.x != rows) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(rows, args.x, call_bytes, cudaMemcpyDeviceToDevice, stream));
  }
  detail::SymmetricNormLaunch launch;
  launch.dev_comm = ws.dev_comm_;
  launch.window = ws.window_;
  launch.staging_row = row_offset;
  launch.tokens = args.tokens;
  launch.hidden = args.hidden;
  launch.shard_rows = shardRows(args.tokens, ws.ranks());
  launch.residual = args.residual;
  launch.residual_out = args.residual_out;
  launch.weight = args.weight;
  launch.eps = static_cast<float>(args.eps);
  detail::launchSymmetricAddRmsNorm(launch, args.dtype, ws.multicast_, ws.launchShape(args.tokens), stream);
  if (args.out != rows) {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(args.out, rows, call_bytes, cudaMemcpyDeviceToDevice, stream));
  }
}

FusedNormCudaPath chooseFusedNormPath(const SymmetricNormWorkspace* ws, const FusedNormArgs& args) {
  const size_t x_bytes = elementBytes(args.dtype) * static_cast<size_t>(args.tokens * args.hidden);
  const bool fits = ws != nullptr && ws->multicast() && ws->hidden() == args.hidden && ws->dtype() == args.dtype &&
                    args.tokens <= ws->capacityRows() && x_bytes <= ws->options().max_auto_bytes;
  return fits ? FusedNormCudaPath::kSymmetricMemory : FusedNormCudaPath::kReduceScatter;
}

}  // namespace loom::parallel::cuda
