// Device memory for CUDA kernel tests: float buffers copied from and back to CPU tensors.
#pragma once

#include "kernels/cuda/cuda_check.h"

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

namespace loom::test {

/// `count` device floats, uninitialised or holding a copy of a CPU float tensor's
/// elements in its memory order (a contiguous copy of it).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t count) : count_(count) {
    LOOM_CUDA_CHECK(cudaMalloc(&data_, sizeof(float) * std::max<int64_t>(count, 1)));
  }
  explicit DeviceBuffer(const at::Tensor& host) : DeviceBuffer(host.numel()) {
    const at::Tensor src = host.contiguous();
    LOOM_CUDA_CHECK(cudaMemcpy(data_, src.data_ptr<float>(), sizeof(float) * count_, cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  float* get() const { return static_cast<float*>(data_); }

  /// Copies the buffer back, shaped as `sizes`, after all device work has finished.
  at::Tensor toHost(at::IntArrayRef sizes) const {
    at::Tensor out = at::empty(sizes, at::kFloat);
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    LOOM_CUDA_CHECK(cudaMemcpy(out.data_ptr<float>(), data_, sizeof(float) * count_, cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  void* data_ = nullptr;
  int64_t count_;
};

}  // namespace loom::test
