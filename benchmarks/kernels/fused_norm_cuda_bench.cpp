// fused_norm_cuda_bench: the achieved memory bandwidth of loom's CUDA fused
// residual-add + RMSNorm kernels, next to cudaMemcpy device-to-device moving the
// same traffic, on one GPU.
//
// Ops: "bf16" (fused_add_rms_norm.cuh, bfloat16 in and out), "fp32sum_bf16" (the
// all-reduce paths' kernel: float32 sums, bfloat16 residual and outputs), "fp32"
// (rms_norm.cuh's float32 kernel, no rstd). Per op and shape [tokens, hidden]:
//   bytes        x and residual read + out and residual_out written (the weight,
//                hidden floats, is left out)
//   kernel_gbps  bytes / median kernel time
//   memcpy_gbps  bytes / median time of a cudaMemcpyAsync of bytes / 2 (which reads
//                and writes bytes / 2 each: the same traffic)
//   ratio        kernel_gbps / memcpy_gbps (issue 7 targets >= 0.8)
// Times are CUDA-event medians over --reps runs after --warmup, one JSON object
// per line. Without a usable GPU it prints {"skipped": reason} and exits 0.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fused_add_rms_norm.cuh"
#include "kernels/cuda/rms_norm.cuh"

#include <ATen/ATen.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr double kEps = 1e-5;

struct BenchOptions {
  int reps = 50;
  int warmup = 10;
  std::vector<std::string> shapes = {"4096x4096", "16384x8192"};
};

/// A device buffer filled from a CPU tensor (random values: no denormal or NaN shortcuts).
class Buffer {
 public:
  explicit Buffer(const at::Tensor& host) : bytes_(host.nbytes()) {
    LOOM_CUDA_CHECK(cudaMalloc(&data_, bytes_));
    LOOM_CUDA_CHECK(cudaMemcpy(data_, host.data_ptr(), bytes_, cudaMemcpyHostToDevice));
  }
  ~Buffer() { cudaFree(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void* data_ = nullptr;
  size_t bytes_;
};

/// Median over `reps` of fn's time on `stream` (CUDA events), in microseconds.
double medianMicros(const std::function<void()>& fn, cudaStream_t stream, const BenchOptions& opts) {
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  LOOM_CUDA_CHECK(cudaEventCreate(&start));
  LOOM_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < opts.warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < opts.reps; ++i) {
    LOOM_CUDA_CHECK(cudaEventRecord(start, stream));
    fn();
    LOOM_CUDA_CHECK(cudaEventRecord(stop, stream));
    LOOM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LOOM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(1000.0 * ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

struct Op {
  std::string name;
  at::ScalarType x_dtype, residual_dtype;  // outputs have residual_dtype
};

void runCase(const Op& op, int64_t tokens, int64_t hidden, cudaStream_t stream, const std::string& device,
             const BenchOptions& opts) {
  const int64_t n = tokens * hidden;
  const at::Tensor x_host = at::randn({n}).to(op.x_dtype);
  // residual and residual_out, then y: one allocation each for inputs and outputs,
  // so the memcpy reference moves the same bytes between two buffers.
  const at::Tensor pair_host = at::randn({2 * n}).to(op.residual_dtype);
  const Buffer x(x_host), inputs(pair_host), outputs(pair_host), weight(at::rand({hidden}) + 0.5);
  const size_t elem = c10::elementSize(op.residual_dtype);
  const size_t bytes = n * (c10::elementSize(op.x_dtype) + 3 * elem);
  const auto kernel = [&] {
    if (op.x_dtype == at::kFloat && op.residual_dtype == at::kFloat) {
      loom::kernels::cuda::fusedAddRmsNormForward(x.as<float>(), inputs.as<float>(), weight.as<float>(),
                                                  outputs.as<float>() + n, outputs.as<float>(), nullptr, tokens, hidden,
                                                  kEps, stream);
    } else if (op.x_dtype == at::kFloat) {
      loom::kernels::cuda::fusedAddRmsNormForward(x.as<float>(), inputs.as<__nv_bfloat16>(), weight.as<float>(),
                                                  outputs.as<__nv_bfloat16>() + n, outputs.as<__nv_bfloat16>(), nullptr,
                                                  tokens, hidden, kEps, stream);
    } else {
      loom::kernels::cuda::fusedAddRmsNormForward(x.as<__nv_bfloat16>(), inputs.as<__nv_bfloat16>(), weight.as<float>(),
                                                  outputs.as<__nv_bfloat16>() + n, outputs.as<__nv_bfloat16>(), nullptr,
                                                  tokens, hidden, kEps, stream);
    }
  };
  const auto copy = [&] {
    LOOM_CUDA_CHECK(
        cudaMemcpyAsync(outputs.as<char>(), inputs.as<char>(), bytes / 2, cudaMemcpyDeviceToDevice, stream));
  };
  const double kernel_us = medianMicros(kernel, stream, opts);
  const double memcpy_us = medianMicros(copy, stream, opts);
  const double kernel_gbps = bytes / kernel_us / 1e3;
  const double memcpy_gbps = bytes / memcpy_us / 1e3;
  const nlohmann::json line = {{"op", op.name},
                               {"tokens", tokens},
                               {"hidden", hidden},
                               {"bytes", bytes},
                               {"kernel_us", kernel_us},
                               {"memcpy_us", memcpy_us},
                               {"kernel_gbps", kernel_gbps},
                               {"memcpy_gbps", memcpy_gbps},
                               {"ratio", kernel_gbps / memcpy_gbps},
                               {"reps", opts.reps},
                               {"device", device}};
  std::cout << line.dump() << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions opts;
  CLI::App app{"Bandwidth of loom's CUDA fused add + RMSNorm kernels vs cudaMemcpy (JSON lines)."};
  app.add_option("--reps", opts.reps, "timed runs per measurement (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", opts.warmup, "untimed runs before timing")->check(CLI::NonNegativeNumber);
  app.add_option("--shape", opts.shapes, "TOKENSxHIDDEN, repeatable (default 4096x4096 16384x8192)");
  CLI11_PARSE(app, argc, argv);

  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::cout << nlohmann::json{{"skipped", std::string("no usable CUDA device: ") + cudaGetErrorName(status)}}.dump()
              << std::endl;
    return 0;
  }
  cudaDeviceProp prop{};
  LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream = nullptr;
  LOOM_CUDA_CHECK(cudaStreamCreate(&stream));
  const std::vector<Op> ops = {{"bf16", at::kBFloat16, at::kBFloat16},
                               {"fp32sum_bf16", at::kFloat, at::kBFloat16},
                               {"fp32", at::kFloat, at::kFloat}};
  for (const std::string& shape : opts.shapes) {
    const size_t cut = shape.find('x');
    if (cut == std::string::npos) {
      std::cerr << "--shape " << shape << ": expected TOKENSxHIDDEN, e.g. 4096x4096" << std::endl;
      return 2;
    }
    const int64_t tokens = std::stoll(shape.substr(0, cut));
    const int64_t hidden = std::stoll(shape.substr(cut + 1));
    for (const Op& op : ops) runCase(op, tokens, hidden, stream, prop.name, opts);
  }
  cudaStreamDestroy(stream);
  return 0;
}
