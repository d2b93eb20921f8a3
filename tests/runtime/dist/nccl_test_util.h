// Shared by the NCCL tests: CUDA device buffers seen as tensors, and ranks as
// threads (one CUDA device each) over one in-memory store.
//
// Device tensors are cudaMalloc'd buffers wrapped with at::for_blob and a CUDA
// target device, so the tests run against Debian's CPU-only libtorch as well as
// a CUDA build: the NCCL communicator only needs a tensor's pointer, dtype and
// shape. Data moves with cudaMemcpy.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <functional>
#include <string>

namespace loom::dist::test {

struct CudaDevices {
  int count = 0;
  std::string reason;  ///< why none were found, when count == 0
};

/// The CUDA devices this process sees (cudaGetDeviceCount).
CudaDevices cudaDevices();

/// A copy of the CPU tensor `host` in a new buffer on CUDA device `device`.
at::Tensor toDevice(const at::Tensor& host, int device);
/// A CPU copy of the contiguous CUDA tensor `t`.
at::Tensor toHost(const at::Tensor& t);

/// Runs fn(rank, store) for ranks 0..size-1 on as many threads (rank r uses
/// CUDA device r) sharing one HashStore; records each rank's exception as a
/// test failure naming the rank.
void runRanks(int size, const std::function<void(int rank, c10::intrusive_ptr<c10d::Store> store)>& fn);

}  // namespace loom::dist::test

/// Skips the test, with the reason, when fewer than `n` CUDA devices exist
/// (the one skip loom's tests allow).
#define LOOM_REQUIRE_CUDA_DEVICES(n)                                                         \
  do {                                                                                       \
    const ::loom::dist::test::CudaDevices loom_devices = ::loom::dist::test::cudaDevices();  \
    if (loom_devices.count < (n)) {                                                          \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), found " << loom_devices.count     \
                   << (loom_devices.reason.empty() ? "" : " (" + loom_devices.reason + ")"); \
    }                                                                                        \
  } while (false)
