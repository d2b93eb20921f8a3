// One training step of the tiny Llama on CUDA equals the same step on the CPU:
// the loss and every parameter's gradient to 1e-4 relative (plus an absolute
// 1e-4 of the largest gradient of that parameter, for entries near zero), with
// float32 matmuls (TF32 off). Built only with a CUDA libtorch; skips without a GPU.
#include "model/llama.h"

#include "tests/kernels/tensor_close.h"
#include "tests/model/tiny_model.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <map>
#include <string>

namespace loom::model {
namespace {

constexpr double kRtol = 1e-4;

/// The mean token loss of `model` on `window` [batch, seq + 1]; gradients accumulated.
double lossAndBackward(Llama& model, const at::Tensor& window) {
  const int64_t seq = window.size(1) - 1;
  const at::Tensor logits = model->forward(window.narrow(1, 0, seq));
  const auto tokens = static_cast<double>(window.size(0) * seq);
  const at::Tensor loss = crossEntropySum(logits, window.narrow(1, 1, seq)) / tokens;
  loss.backward();
  return loss.item<double>();
}

TEST(LlamaCudaTest, OneTrainingStepOnCudaEqualsTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no usable CUDA device";
  const bool tf32 = at::globalContext().allowTF32CuBLAS();
  at::globalContext().setAllowTF32CuBLAS(false);
  constexpr int64_t kSeq = 16;
  Llama cpu = test::tinyModel(kSeq, /*seed=*/7);
  Llama gpu = test::tinyModel(kSeq, /*seed=*/7);
  gpu->to(at::Device(at::kCUDA, 0));
  const at::Tensor window = at::randint(64, {3, kSeq + 1}, at::detail::createCPUGenerator(3), at::kLong);

  const double cpu_loss = lossAndBackward(cpu, window);
  const double gpu_loss = lossAndBackward(gpu, window.cuda());
  EXPECT_NEAR(gpu_loss, cpu_loss, kRtol * std::abs(cpu_loss));

  std::map<std::string, at::Tensor> cpu_grads;
  for (const auto& [name, param] : cpu->namedParameters()) cpu_grads[name] = param.grad();
  for (const auto& [name, param] : gpu->namedParameters()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(param.grad().defined() && param.grad().is_cuda());
    const at::Tensor& want = cpu_grads.at(name);
    const double scale = want.abs().max().item<double>();
    EXPECT_TRUE(loom::test::allClose(param.grad().cpu(), want, kRtol, kRtol * scale));
  }
  at::globalContext().setAllowTF32CuBLAS(tf32);
}

}  // namespace
}  // namespace loom::model
