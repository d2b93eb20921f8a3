// gpu_train_bench: training throughput of loom's Llama (model/llama.h) on one GPU.
//
// The model runs in float32 on CUDA (loom's CUDA kernels are float32; matmuls
// use TF32 tensor cores unless --no-tf32), trained with libtorch's AdamW
// (loom's optim::AdamW is CPU-only; this one also decays the norm gains, which
// costs the same) on random tokens. After --warmup untimed steps it times
// --steps steps, each synchronised, and prints one JSON line:
//   {"params", "dim", "layers", "heads", "ffn", "vocab", "seq", "batch", "steps",
//    "step_ms" (median), "tokens_per_s" (batch * seq / median step), "mfu",
//    "peak_tflops", "tf32", "loss_first", "loss_last", "device"}
// MFU = tokens_per_s * trainingFlopsPerToken(model, seq) / peak. The default
// peak, 494 TFLOP/s, is an H100/H200 SXM's dense TF32 tensor-core peak: the one
// that bounds float32 training with TF32 matmuls. (Dense bfloat16 is 989; this
// benchmark does not train in bfloat16.) Needs a CUDA libtorch.
#include "model/init.h"
#include "model/llama.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct BenchOptions {
  loom::ModelOptions model;
  int64_t seq = 1024;
  int64_t batch = 8;
  int steps = 30;
  int warmup = 5;
  double lr = 3e-4;
  double peak_tflops = 494;
  bool tf32 = true;
};

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions opts;
  opts.model.vocab_size = 32000;
  opts.model.dim = 1024;
  opts.model.layers = 8;
  opts.model.heads = 16;
  opts.model.kv_heads = 8;
  opts.model.ffn_dim = 2816;
  CLI::App app{"Training throughput and MFU of loom's Llama on one GPU (JSON line)."};
  app.add_option("--dim", opts.model.dim, "model width");
  app.add_option("--layers", opts.model.layers, "transformer blocks");
  app.add_option("--heads", opts.model.heads, "query heads");
  app.add_option("--kv-heads", opts.model.kv_heads, "key/value heads");
  app.add_option("--ffn", opts.model.ffn_dim, "SwiGLU hidden width");
  app.add_option("--vocab", opts.model.vocab_size, "vocabulary size");
  app.add_option("--seq", opts.seq, "tokens per sequence")->check(CLI::PositiveNumber);
  app.add_option("--batch", opts.batch, "sequences per step")->check(CLI::PositiveNumber);
  app.add_option("--steps", opts.steps, "timed steps (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", opts.warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--peak-tflops", opts.peak_tflops, "peak TFLOP/s for MFU (494: H100/H200 dense TF32)");
  app.add_flag("!--no-tf32", opts.tf32, "float32 matmuls without TF32 tensor cores");
  CLI11_PARSE(app, argc, argv);

  if (!torch::cuda::is_available()) {
    std::cout << nlohmann::json{{"skipped", "no usable CUDA device (or libtorch without CUDA)"}}.dump() << std::endl;
    return 0;
  }
  at::globalContext().setAllowTF32CuBLAS(opts.tf32);
  opts.model.max_seq_len = opts.seq;
  const at::Device device(at::kCUDA, 0);
  loom::model::Llama model(opts.model);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  loom::model::initializeParameters(*model, gen);
  model->to(device);
  torch::optim::AdamW optimizer(model->parameters(),
                                torch::optim::AdamWOptions(opts.lr).betas({0.9, 0.95}).weight_decay(0.1));

  const int64_t tokens_per_step = opts.batch * opts.seq;
  const auto step = [&] {
    const at::Tensor window = at::randint(opts.model.vocab_size, {opts.batch, opts.seq + 1},
                                          at::TensorOptions().dtype(at::kLong).device(device));
    const at::Tensor logits = model->forward(window.narrow(1, 0, opts.seq));
    const at::Tensor loss =
        loom::model::crossEntropySum(logits, window.narrow(1, 1, opts.seq)) / static_cast<double>(tokens_per_step);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    return loss;
  };
  double loss_first = 0;
  for (int i = 0; i < opts.warmup; ++i) {
    const double loss = step().item<double>();
    if (i == 0) loss_first = loss;
  }
  std::vector<double> step_ms;
  double loss_last = 0;
  for (int i = 0; i < opts.steps; ++i) {
    torch::cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    const at::Tensor loss = step();
    torch::cuda::synchronize();
    step_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    loss_last = loss.item<double>();
    if (opts.warmup == 0 && i == 0) loss_first = loss_last;
  }
  cudaDeviceProp prop{};
  const std::string device_name = cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.name : "cuda:0";
  const double ms = median(step_ms);
  const double tokens_per_s = tokens_per_step / (ms / 1e3);
  const double flops_per_token = loom::model::trainingFlopsPerToken(opts.model, opts.seq);
  const nlohmann::json line = {{"params", loom::model::parameterCount(opts.model)},
                               {"dim", opts.model.dim},
                               {"layers", opts.model.layers},
                               {"heads", opts.model.heads},
                               {"ffn", opts.model.ffn_dim},
                               {"vocab", opts.model.vocab_size},
                               {"seq", opts.seq},
                               {"batch", opts.batch},
                               {"steps", opts.steps},
                               {"step_ms", ms},
                               {"tokens_per_s", tokens_per_s},
                               {"mfu", tokens_per_s * flops_per_token / (opts.peak_tflops * 1e12)},
                               {"peak_tflops", opts.peak_tflops},
                               {"tf32", opts.tf32},
                               {"loss_first", loss_first},
                               {"loss_last", loss_last},
                               {"device", device_name}};
  std::cout << line.dump() << std::endl;
  return 0;
}
