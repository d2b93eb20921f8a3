// What the CUDA kernel tests share: float device buffers copied from and back
// to CPU tensors, and a fixture that skips (with the reason) where no CUDA
// device is usable and otherwise gives each test a stream.
#pragma once

#include "kernels/cuda/cuda_check.h"

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

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

class CudaStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      GTEST_SKIP() << "no usable CUDA device: cudaGetDeviceCount returned " << cudaGetErrorName(status) << " with "
                   << count << " devices";
    }
    LOOM_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) {
      cudaStreamDestroy(stream_);
    }
  }
  cudaStream_t stream_ = nullptr;
};

}  // namespace loom::test
