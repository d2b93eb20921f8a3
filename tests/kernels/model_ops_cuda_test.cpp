// The CUDA rope, causal_softmax and swiglu kernels on device buffers against the CPU
// kernels (float32, rtol 1e-5; outputs whose terms can cancel also get atol = rtol *
// their terms' magnitude, as in the CPU tests), exact zeros in the masked part of the
// softmax, and bitwise run-to-run determinism. Skips, with the reason, where no CUDA
// device is usable.
#include "kernels/cpu/causal_softmax.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/swiglu.h"
#include "kernels/cuda/causal_softmax.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"

#include "tests/kernels/device_buffer.h"
#include "tests/kernels/model_ops_reference.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace loom::kernels {
namespace {

using test::allClose;
using test::DeviceBuffer;

constexpr double kRtol = 1e-5;
constexpr double kScale = 0.17677669529663687;  // 1 / sqrt(32)

class CudaModelOpsTest : public test::CudaStreamTest {};

double maxAbs(const at::Tensor& t) {
  return t.numel() == 0 ? 0 : t.abs().max().item<double>();
}

RopeLayout layoutOf(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2)};
}

struct RopeResult {
  at::Tensor y, dx;
};

/// x is a strided view into `storage` (a contiguous float tensor) starting at `offset`.
RopeResult runRopeCuda(const at::Tensor& storage, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                       const at::Tensor& dy, cudaStream_t stream) {
  const DeviceBuffer d_storage(storage), d_cos(cos), d_sin(sin), d_dy(dy);
  const DeviceBuffer d_y(x.numel()), d_dx(x.numel());
  cuda::ropeForward(d_storage.get() + x.storage_offset(), layoutOf(x), d_cos.get(), d_sin.get(), d_y.get(), stream);
  cuda::ropeBackward(d_dy.get(), layoutOf(dy), d_cos.get(), d_sin.get(), d_dx.get(), stream);
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {d_y.toHost(x.sizes()), d_dx.toHost(x.sizes())};
}

TEST_F(CudaModelOpsTest, RopeMatchesCpuKernels) {
  const std::vector<std::array<int64_t, 4>> shapes = {{1, 1, 1, 2}, {2, 5, 3, 34}, {16, 128, 4, 32}, {2, 7, 2, 130}};
  for (bool strided : {false, true}) {
    for (const auto& [b, t, h, hd] : shapes) {
      SCOPED_TRACE(c10::str(strided ? "strided " : "contiguous ", b, "x", t, "x", h, "x", hd));
      at::manual_seed(b * 1000 + t * 10 + hd);
      // Strided: the middle third of a [B, H, T, 3 * hd] buffer, permuted to [B, T, H, hd].
      const at::Tensor storage = strided ? at::randn({b, h, t, 3 * hd}) : at::randn({b, t, h, hd});
      const at::Tensor x = strided ? storage.narrow(3, hd, hd).permute({0, 2, 1, 3}) : storage;
      const at::Tensor angles = at::randn({t, hd / 2});
      const at::Tensor cos = angles.cos();
      const at::Tensor sin = angles.sin();
      const at::Tensor dy = at::randn({b, t, h, hd});
      RopeResult cpu{at::empty({b, t, h, hd}), at::empty({b, t, h, hd})};
      cpu::ropeForward<float>(x.data_ptr<float>(), layoutOf(x), cos.data_ptr<float>(), sin.data_ptr<float>(),
                              cpu.y.data_ptr<float>());
      cpu::ropeBackward<float>(dy.data_ptr<float>(), layoutOf(dy), cos.data_ptr<float>(), sin.data_ptr<float>(),
                               cpu.dx.data_ptr<float>());
      const RopeResult gpu = runRopeCuda(storage, x, cos, sin, dy, stream_);
      EXPECT_TRUE(allClose(gpu.y, cpu.y, kRtol, kRtol * maxAbs(x)));
      EXPECT_TRUE(allClose(gpu.dx, cpu.dx, kRtol, kRtol * maxAbs(dy)));
    }
  }
}

struct SoftmaxResult {
  at::Tensor probs, dscores;
};

SoftmaxResult runSoftmaxCuda(const at::Tensor& scores, const at::Tensor& dprobs, cudaStream_t stream) {
  const int64_t n = scores.size(0), q = scores.size(1), k = scores.size(2);
  const DeviceBuffer d_scores(scores), d_dprobs(dprobs);
  // Poisoned outputs: the masked zeros must be written, not inherited.
  const DeviceBuffer d_probs(at::full_like(scores, 7.0)), d_dscores(at::full_like(scores, 7.0));
  cuda::causalSoftmaxForward(d_scores.get(), d_probs.get(), n, q, k, kScale, stream);
  cuda::causalSoftmaxBackward(d_dprobs.get(), d_probs.get(), d_dscores.get(), n, q, k, kScale, stream);
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {d_probs.toHost(scores.sizes()), d_dscores.toHost(scores.sizes())};
}

TEST_F(CudaModelOpsTest, CausalSoftmaxMatchesCpuKernels) {
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1}, {3, 5, 5}, {2, 7, 40}, {64, 128, 128}, {2, 17, 600}};
  for (const auto& [n, q, k] : shapes) {
    SCOPED_TRACE(c10::str(n, "x", q, "x", k));
    at::manual_seed(n * 100 + q * 10 + k);
    const at::Tensor scores = 3 * at::randn({n, q, k});
    const at::Tensor dprobs = at::randn({n, q, k});
    SoftmaxResult cpu{at::empty_like(scores), at::empty_like(scores)};
    cpu::causalSoftmaxForward<float>(scores.data_ptr<float>(), cpu.probs.data_ptr<float>(), n, q, k, kScale);
    cpu::causalSoftmaxBackward<float>(dprobs.data_ptr<float>(), cpu.probs.data_ptr<float>(),
                                      cpu.dscores.data_ptr<float>(), n, q, k, kScale);
    const SoftmaxResult gpu = runSoftmaxCuda(scores, dprobs, stream_);
    EXPECT_TRUE(allClose(gpu.probs, cpu.probs, kRtol, 0));
    EXPECT_TRUE(
        allClose(gpu.dscores, cpu.dscores, kRtol, kRtol * test::causalSoftmaxGradScale(cpu.probs, dprobs, kScale)));
    const at::Tensor masked = ~test::causalMask(q, k).expand_as(scores);
    const int64_t masked_count = masked.sum().item<int64_t>();
    EXPECT_TRUE(at::equal(gpu.probs.masked_select(masked), at::zeros({masked_count})));
    EXPECT_TRUE(at::equal(gpu.dscores.masked_select(masked), at::zeros({masked_count})));
  }
}

struct SwigluResult {
  at::Tensor y, dgate, dup;
};

SwigluResult runSwigluCuda(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& dy, cudaStream_t stream) {
  const int64_t n = gate.numel();
  const DeviceBuffer d_gate(gate), d_up(up), d_dy(dy);
  const DeviceBuffer d_y(n), d_dgate(n), d_dup(n);
  cuda::swigluForward(d_gate.get(), d_up.get(), d_y.get(), n, stream);
  cuda::swigluBackward(d_dy.get(), d_gate.get(), d_up.get(), d_dgate.get(), d_dup.get(), n, stream);
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {d_y.toHost(gate.sizes()), d_dgate.toHost(gate.sizes()), d_dup.toHost(gate.sizes())};
}

TEST_F(CudaModelOpsTest, SwigluMatchesCpuKernels) {
  for (int64_t n : {1, 33, 2048 * 384 + 5}) {
    SCOPED_TRACE(c10::str("n ", n));
    at::manual_seed(n);
    const at::Tensor gate = 3 * at::randn({n});
    const at::Tensor up = at::randn({n});
    const at::Tensor dy = at::randn({n});
    SwigluResult cpu{at::empty_like(gate), at::empty_like(gate), at::empty_like(gate)};
    cpu::swigluForward<float>(gate.data_ptr<float>(), up.data_ptr<float>(), cpu.y.data_ptr<float>(), n);
    cpu::swigluBackward<float>(dy.data_ptr<float>(), gate.data_ptr<float>(), up.data_ptr<float>(),
                               cpu.dgate.data_ptr<float>(), cpu.dup.data_ptr<float>(), n);
    const SwigluResult gpu = runSwigluCuda(gate, up, dy, stream_);
    EXPECT_TRUE(allClose(gpu.y, cpu.y, kRtol, 0));
    EXPECT_TRUE(allClose(gpu.dup, cpu.dup, kRtol, 0));
    EXPECT_TRUE(allClose(gpu.dgate, cpu.dgate, kRtol, kRtol * test::swigluGateGradScale(gate, up, dy)));
  }
}

TEST_F(CudaModelOpsTest, RepeatedRunsAreBitwiseIdentical) {
  at::manual_seed(4);
  const at::Tensor scores = at::randn({64, 128, 128});
  const at::Tensor dprobs = at::randn({64, 128, 128});
  const SoftmaxResult first = runSoftmaxCuda(scores, dprobs, stream_);
  const SoftmaxResult second = runSoftmaxCuda(scores, dprobs, stream_);
  EXPECT_TRUE(at::equal(first.probs, second.probs));
  EXPECT_TRUE(at::equal(first.dscores, second.dscores));
  const at::Tensor gate = at::randn({100003});
  const SwigluResult s1 = runSwigluCuda(gate, dprobs.flatten().narrow(0, 0, 100003), gate, stream_);
  const SwigluResult s2 = runSwigluCuda(gate, dprobs.flatten().narrow(0, 0, 100003), gate, stream_);
  EXPECT_TRUE(at::equal(s1.y, s2.y));
  EXPECT_TRUE(at::equal(s1.dgate, s2.dgate));
}

}  // namespace
}  // namespace loom::kernels
