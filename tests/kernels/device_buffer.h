// What the CUDA kernel tests share: device buffers copied from and back to CPU
// tensors (float, or bytes of any dtype), and a fixture that skips (with the
// reason) where no CUDA device is usable and otherwise gives each test a stream.
#pragma once

#include "kernels/cuda/cuda_check.h"

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

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

/// A device copy of a CPU tensor of any dtype (contiguous bytes), or `bytes`
/// uninitialised bytes; read back as a CPU tensor of a given shape and dtype.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    LOOM_CUDA_CHECK(cudaMalloc(&data_, std::max<size_t>(bytes, 1)));
  }
  explicit DeviceBytes(const at::Tensor& host) : DeviceBytes(host.nbytes()) {
    const at::Tensor src = host.contiguous();
    LOOM_CUDA_CHECK(cudaMemcpy(data_, src.data_ptr(), bytes_, cudaMemcpyHostToDevice));
  }
  ~DeviceBytes() { cudaFree(data_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  void* get() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

  /// The first bytes of the buffer as a CPU tensor, after all device work has finished.
  at::Tensor toHost(at::IntArrayRef sizes, at::ScalarType dtype) const {
    at::Tensor out = at::empty(sizes, at::TensorOptions().dtype(dtype));
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    LOOM_CUDA_CHECK(cudaMemcpy(out.data_ptr(), data_, out.nbytes(), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

/// Whether a CUDA device is usable, and if not, why (for GTEST_SKIP).
inline bool cudaUsable(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess && count > 0) {
    return true;
  }
  *reason = std::string("no usable CUDA device: cudaGetDeviceCount returned ") + cudaGetErrorName(status) + " with " +
            std::to_string(count) + " devices";
  return false;
}

class CudaStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    if (!cudaUsable(&reason)) {
      GTEST_SKIP() << reason;
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
