// rms_norm_bench: loom's RMSNorm ops (kernels/torch/rms_norm_ops.h) against the same
// math composed from plain libtorch ops, on the CPU, forward alone and forward +
// backward through autograd (gradients for every input).
//
// Prints one JSON object per line and measurement:
//   {"op", "pass", "shape", "dtype", "threads", "reps", "loom_us", "reference_us", "speedup"}
// times are medians over --reps timed runs after --warmup untimed ones;
// speedup = reference_us / loom_us.
#include "benchmarks/kernels/median_timer.h"
#include "kernels/torch/rms_norm_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr double kEps = 1e-5;

struct BenchOptions {
  int reps = 30;
  int warmup = 5;
  std::vector<int> threads = {1, 2};
};

at::Tensor compositeRmsNorm(const at::Tensor& x, const at::Tensor& w) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + kEps) * w;
}

/// One measurement's inputs (autograd leaves when the backward is timed) and upstream gradient.
struct Case {
  at::Tensor x, residual, weight, dy;
};

using OpFn = std::function<std::vector<at::Tensor>(const Case&)>;

double medianMicros(const std::function<void()>& fn, const BenchOptions& opts) {
  return loom::bench::medianMicros(fn, opts.warmup, opts.reps);
}

/// Forward, and with `backward` a backward with upstream gradient dy for every output.
std::function<void()> pass(const OpFn& op, const Case& c, bool backward) {
  return [op, c, backward] {
    const std::vector<at::Tensor> outs = op(c);
    if (backward) {
      torch::autograd::backward(outs, std::vector<at::Tensor>(outs.size(), c.dy));
      for (const at::Tensor& leaf : {c.x, c.residual, c.weight}) {
        leaf.mutable_grad().reset();
      }
    }
  };
}

void runCase(const std::string& name, const OpFn& loom_op, const OpFn& reference_op, std::vector<int64_t> shape,
             at::ScalarType dtype, const BenchOptions& opts) {
  at::manual_seed(0);
  const at::TensorOptions options = at::TensorOptions().dtype(dtype);
  for (bool backward : {false, true}) {
    const Case c{at::randn(shape, options).requires_grad_(backward), at::randn(shape, options).requires_grad_(backward),
                 at::randn({shape.back()}, options).requires_grad_(backward), at::randn(shape, options)};
    for (int threads : opts.threads) {
      at::set_num_threads(threads);
      const double loom_us = medianMicros(pass(loom_op, c, backward), opts);
      const double reference_us = medianMicros(pass(reference_op, c, backward), opts);
      const nlohmann::json line = {{"op", name},
                                   {"pass", backward ? "forward+backward" : "forward"},
                                   {"shape", shape},
                                   {"dtype", std::string(c10::toString(dtype))},
                                   {"threads", threads},
                                   {"reps", opts.reps},
                                   {"loom_us", loom_us},
                                   {"reference_us", reference_us},
                                   {"speedup", reference_us / loom_us}};
      std::cout << line.dump() << std::endl;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions opts;
  CLI::App app{"Times loom's RMSNorm ops against plain-libtorch composites (JSON lines)."};
  app.add_option("--reps", opts.reps, "timed runs per measurement (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", opts.warmup, "untimed runs before timing")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", opts.threads, "intra-op thread counts to measure")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  const OpFn loom_rms = [](const Case& c) {
    return std::vector<at::Tensor>{loom::kernels::rmsNorm(c.x, c.weight, kEps)};
  };
  const OpFn reference_rms = [](const Case& c) { return std::vector<at::Tensor>{compositeRmsNorm(c.x, c.weight)}; };
  const OpFn loom_fused = [](const Case& c) {
    auto [out, residual_out] = loom::kernels::fusedAddRmsNorm(c.x, c.residual, c.weight, kEps);
    return std::vector<at::Tensor>{out, residual_out};
  };
  const OpFn reference_fused = [](const Case& c) {
    at::Tensor residual_out = c.x + c.residual;
    return std::vector<at::Tensor>{compositeRmsNorm(residual_out, c.weight), residual_out};
  };
  const std::vector<std::vector<int64_t>> shapes = {{16 * 128, 128}, {4096, 1024}};
  for (const auto& shape : shapes) {
    for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
      runCase("rms_norm", loom_rms, reference_rms, shape, dtype, opts);
      runCase("fused_add_rms_norm", loom_fused, reference_fused, shape, dtype, opts);
    }
  }
  return 0;
}
