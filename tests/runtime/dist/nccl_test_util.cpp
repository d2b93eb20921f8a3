#include "tests/runtime/dist/nccl_test_util.h"

#include "runtime/core/error.h"
#include "runtime/dist/nccl_check.h"
#include "runtime/dist/nccl_comm.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <exception>
#include <thread>
#include <vector>

namespace loom::dist::test {

CudaDevices cudaDevices() {
  CudaDevices devices;
  const cudaError_t status = cudaGetDeviceCount(&devices.count);
  if (status != cudaSuccess) {
    devices.count = 0;
    devices.reason = c10::str("cudaGetDeviceCount: ", cudaGetErrorName(status), ": ", cudaGetErrorString(status));
  }
  return devices;
}

at::Tensor toDevice(const at::Tensor& host, int device) {
  const at::Tensor source = host.contiguous();
  const size_t bytes = source.nbytes();
  void* data = nullptr;
  if (bytes > 0) {
    CudaDeviceGuard guard(device);
    LOOM_DIST_CUDA_CHECK(cudaMalloc(&data, bytes), "test buffer of ", bytes, " bytes");
    LOOM_DIST_CUDA_CHECK(cudaMemcpy(data, source.data_ptr(), bytes, cudaMemcpyHostToDevice), "filling a test buffer");
  }
  const at::Device target(at::kCUDA, static_cast<c10::DeviceIndex>(device));
  return at::for_blob(data, source.sizes())
      .options(at::TensorOptions().dtype(source.scalar_type()).device(target))
      .target_device(target)
      .deleter([](void* p) {
        if (p != nullptr) cudaFree(p);
      })
      .make_tensor();
}

at::Tensor toHost(const at::Tensor& t) {
  at::Tensor host = at::empty(t.sizes(), at::TensorOptions().dtype(t.scalar_type()));
  if (t.nbytes() > 0) {
    LOOM_DIST_CUDA_CHECK(cudaMemcpy(host.data_ptr(), t.data_ptr(), t.nbytes(), cudaMemcpyDeviceToHost),
                         "reading a test buffer");
  }
  return host;
}

void runRanks(int size, const std::function<void(int rank, c10::intrusive_ptr<c10d::Store> store)>& fn) {
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::exception_ptr> errors(size);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        fn(rank, store);
      } catch (...) {
        errors[rank] = std::current_exception();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int rank = 0; rank < size; ++rank) {
    if (!errors[rank]) continue;
    try {
      std::rethrow_exception(errors[rank]);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "rank " << rank << ": " << errorMessage(e);
    }
  }
}

}  // namespace loom::dist::test
