#include "parallel/side_stream.h"

#include "runtime/core/build_config.h"
#include "runtime/core/error.h"

#if LOOM_PARALLEL_TORCH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#if LOOM_WITH_NCCL
#include "runtime/dist/nccl_communicator.h"
#endif
#endif

namespace loom::parallel {

#if LOOM_PARALLEL_TORCH_CUDA
namespace {

#if LOOM_WITH_NCCL
using NcclGroup = dist::NcclCommunicator;
#else
struct NcclGroup {};
#endif

/// While it lives, `group`'s NCCL calls order after `stream` (collectives a job
/// issues); outside jobs they order after whatever they did before.
class GroupOrder {
 public:
  GroupOrder(NcclGroup* group, cudaStream_t stream) : group_(group) {
#if LOOM_WITH_NCCL
    if (group_ != nullptr) previous_ = group_->setComputeStream(stream);
#else
    (void)stream;
#endif
  }
  ~GroupOrder() {
#if LOOM_WITH_NCCL
    if (group_ != nullptr) group_->setComputeStream(previous_);
#endif
  }
  GroupOrder(const GroupOrder&) = delete;
  GroupOrder& operator=(const GroupOrder&) = delete;

 private:
  NcclGroup* group_;
  cudaStream_t previous_ = nullptr;
};

class CudaEvent {
 public:
  /// On `device`, whatever the thread's current device: an event is recorded
  /// only on streams of the device it was made on.
  explicit CudaEvent(c10::DeviceIndex device) {
    const c10::cuda::CUDAGuard on(device);
    C10_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }
  ~CudaEvent() { cudaEventDestroy(event_); }  // the runtime releases it once pending waits are done
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class CudaHandoff final : public StreamHandoff {
 public:
  /// On the submitting thread: marks its current stream.
  CudaHandoff(const c10::cuda::CUDAStream& side, NcclGroup* group)
      : side_(side), group_(group), ready_(side.device_index()), done_(side.device_index()) {
    C10_CUDA_CHECK(cudaEventRecord(ready_.get(), c10::cuda::getCurrentCUDAStream(side.device_index()).stream()));
  }

  void run(const std::function<void()>& job) override {
    const c10::cuda::CUDAStreamGuard current(side_);  // also the thread's device, restored after
    const GroupOrder order(group_, side_.stream());
    C10_CUDA_CHECK(cudaStreamWaitEvent(side_.stream(), ready_.get(), 0));
    job();
    C10_CUDA_CHECK(cudaEventRecord(done_.get(), side_.stream()));
  }

  void join(const std::vector<at::Tensor>& results) override {
    const c10::cuda::CUDAStream waiter = c10::cuda::getCurrentCUDAStream(side_.device_index());
    C10_CUDA_CHECK(cudaStreamWaitEvent(waiter.stream(), done_.get(), 0));
    for (const at::Tensor& t : results) {
      if (t.defined() && t.is_cuda()) t.record_stream(waiter);
    }
  }

 private:
  c10::cuda::CUDAStream side_;
  NcclGroup* group_;
  CudaEvent ready_;
  CudaEvent done_;
};

class CudaSideStream final : public SideStream {
 public:
  CudaSideStream(const c10::cuda::CUDAStream& stream, NcclGroup* group) : stream_(stream), group_(group) {}

  std::shared_ptr<StreamHandoff> handOff(const std::vector<at::Tensor>& inputs) override {
    for (const at::Tensor& t : inputs) {
      if (t.defined() && t.is_cuda()) t.record_stream(stream_);
    }
    return std::make_shared<CudaHandoff>(stream_, group_);
  }

 private:
  c10::cuda::CUDAStream stream_;
  NcclGroup* group_;
};

}  // namespace
#endif

std::unique_ptr<SideStream> makeSideStream(const c10::Device& device, dist::Communicator& group) {
  if (!device.is_cuda()) return nullptr;
#if LOOM_PARALLEL_TORCH_CUDA
  const c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index());
  NcclGroup* nccl = nullptr;
#if LOOM_WITH_NCCL
  nccl = dynamic_cast<dist::NcclCommunicator*>(&group);
  LOOM_CHECK_INPUT(nccl == nullptr || nccl->device() == device.index(),
                   "tensor parallel: the group's NCCL communicator is on cuda:", nccl->device(),
                   " but the tensors are on ", device, "; give each rank its own device");
#else
  (void)group;
#endif
  return std::make_unique<CudaSideStream>(stream, nccl);
#else
  (void)group;
  LOOM_CHECK_INPUT(false, "tensor parallel: tensors on ", device,
                   " need loom built with CUDA against a CUDA libtorch (-DLOOM_WITH_CUDA=ON, CMAKE_PREFIX_PATH from "
                   "python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')");
  return nullptr;
#endif
}

#if LOOM_PARALLEL_TORCH_CUDA
struct CurrentStreamOrder::Order {
  Order(NcclGroup* group, cudaStream_t stream) : order(group, stream) {}
  GroupOrder order;
};
#else
struct CurrentStreamOrder::Order {};
#endif

CurrentStreamOrder::CurrentStreamOrder(dist::Communicator& group, const c10::Device& device) {
#if LOOM_PARALLEL_TORCH_CUDA && LOOM_WITH_NCCL
  auto* nccl = dynamic_cast<dist::NcclCommunicator*>(&group);
  if (device.is_cuda() && nccl != nullptr) {
    order_ = std::make_unique<Order>(nccl, c10::cuda::getCurrentCUDAStream(device.index()).stream());
  }
#else
  (void)group;
  (void)device;
#endif
}

CurrentStreamOrder::~CurrentStreamOrder() = default;

}  // namespace loom::parallel
