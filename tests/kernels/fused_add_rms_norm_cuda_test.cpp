// The bfloat16 fused add + RMSNorm CUDA kernels (kernels/cuda/fused_add_rms_norm.cuh),
// and rms_norm.cuh's float32 one with no rstd, against a float64 reference computed
// on the host from the same inputs: bfloat16 to atol 1e-2 / rtol 1.6e-2, float32 to
// 1e-5 (parallel_elastic.md §6). Shapes: hidden {64, 4096, 8192} x tokens {1, 7,
// 1024, 4099}, plus the scalar fallback (hidden % 8 != 0, misaligned pointers), rows
// past 48 KiB of shared memory, in-place updates and run-to-run determinism. Skips,
// with the reason, where no CUDA device is usable.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fused_add_rms_norm.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "runtime/core/error.h"

#include "tests/kernels/device_buffer.h"
#include "tests/kernels/rms_norm_reference.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>

namespace loom::kernels {
namespace {

using test::allClose;
using test::DeviceBytes;

constexpr double kEps = 1e-5;
constexpr double kBf16Atol = 1e-2;
constexpr double kBf16Rtol = 1.6e-2;
constexpr double kFp32Tol = 1e-5;

class CudaFusedAddRmsNormTest : public test::CudaStreamTest {};

struct Inputs {
  at::Tensor x, residual, weight;  // CPU, x and residual in the kernel's dtypes, weight float32
};

Inputs makeInputs(int64_t rows, int64_t cols, at::ScalarType x_dtype, at::ScalarType residual_dtype, uint64_t seed) {
  const at::Generator gen = at::detail::createCPUGenerator(seed);
  return {at::randn({rows, cols}, gen).to(x_dtype), at::randn({rows, cols}, gen).to(residual_dtype),
          at::rand({cols}, gen) + 0.5};
}

/// float64 (out, residual_out, rstd) from exactly the values the kernel reads.
std::tuple<at::Tensor, at::Tensor, at::Tensor> reference(const Inputs& in) {
  const at::Tensor v = in.x.to(at::kDouble) + in.residual.to(at::kDouble);
  const auto [out, residual_out] = test::referenceFusedAddRmsNorm(in.x.to(at::kDouble), in.residual.to(at::kDouble),
                                                                  in.weight.to(at::kDouble), kEps);
  return {out, residual_out, at::rsqrt(v.pow(2).mean(-1) + kEps)};
}

struct Outputs {
  at::Tensor out, residual_out, rstd;
};

/// Runs the bfloat16-output kernel for `in` (x bfloat16 or float32); `shift`
/// elements of offset into every buffer make the pointers misaligned.
Outputs runBf16(const Inputs& in, cudaStream_t stream, int64_t shift = 0) {
  const int64_t rows = in.x.size(0);
  const int64_t cols = in.x.size(1);
  const auto shifted = [shift](const at::Tensor& t) {
    return at::cat({at::zeros({shift}, t.options()), t.reshape({-1})});
  };
  const DeviceBytes x(shifted(in.x)), residual(shifted(in.residual)), weight(shifted(in.weight));
  const DeviceBytes y((rows * cols + shift) * 2), residual_out((rows * cols + shift) * 2), rstd(rows * 4);
  auto* y_ptr = y.as<__nv_bfloat16>() + shift;
  auto* res_out_ptr = residual_out.as<__nv_bfloat16>() + shift;
  const auto* res_ptr = residual.as<__nv_bfloat16>() + shift;
  const float* w_ptr = weight.as<float>() + shift;
  if (in.x.scalar_type() == at::kFloat) {
    cuda::fusedAddRmsNormForward(x.as<float>() + shift, res_ptr, w_ptr, y_ptr, res_out_ptr, rstd.as<float>(), rows,
                                 cols, kEps, stream);
  } else {
    cuda::fusedAddRmsNormForward(x.as<__nv_bfloat16>() + shift, res_ptr, w_ptr, y_ptr, res_out_ptr, rstd.as<float>(),
                                 rows, cols, kEps, stream);
  }
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  const auto unshift = [&](const DeviceBytes& b) {
    return b.toHost({rows * cols + shift}, at::kBFloat16).narrow(0, shift, rows * cols).reshape({rows, cols});
  };
  return {unshift(y), unshift(residual_out), rstd.toHost({rows}, at::kFloat)};
}

void expectMatches(const Outputs& got, const Inputs& in, const std::string& label) {
  SCOPED_TRACE(label);
  const auto [out, residual_out, rstd] = reference(in);
  EXPECT_TRUE(allClose(got.out, out, kBf16Rtol, kBf16Atol));
  EXPECT_TRUE(allClose(got.residual_out, residual_out, kBf16Rtol, kBf16Atol));
  EXPECT_TRUE(allClose(got.rstd, rstd, kFp32Tol, 0));
}

TEST_F(CudaFusedAddRmsNormTest, Bfloat16MatchesTheFloat64Reference) {
  for (const int64_t cols : {64, 4096, 8192}) {
    for (const int64_t rows : {1, 7, 1024, 4099}) {
      const Inputs in = makeInputs(rows, cols, at::kBFloat16, at::kBFloat16, rows * 7919 + cols);
      expectMatches(runBf16(in, stream_), in, "bf16 [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    }
  }
}

TEST_F(CudaFusedAddRmsNormTest, Float32SumsWithBfloat16ResidualMatchTheReference) {
  for (const int64_t cols : {64, 4096, 8192}) {
    for (const int64_t rows : {1, 7, 1024}) {
      const Inputs in = makeInputs(rows, cols, at::kFloat, at::kBFloat16, rows * 31 + cols);
      expectMatches(runBf16(in, stream_), in, "fp32 sum [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    }
  }
}

TEST_F(CudaFusedAddRmsNormTest, ScalarFallbackMatchesTheReference) {
  // hidden % 8 != 0, and pointers 2 bytes off 16-byte alignment.
  for (const int64_t cols : {1, 100, 4099}) {
    const Inputs in = makeInputs(33, cols, at::kBFloat16, at::kBFloat16, cols);
    expectMatches(runBf16(in, stream_), in, "odd hidden " + std::to_string(cols));
  }
  const Inputs in = makeInputs(33, 4096, at::kBFloat16, at::kBFloat16, 5);
  expectMatches(runBf16(in, stream_, /*shift=*/1), in, "misaligned");
}

TEST_F(CudaFusedAddRmsNormTest, RowsWiderThan48KiBUseOptInSharedMemory) {
  // 12288: 48 KiB of float32 per row, over the default limit only with the kernel's static
  // shared memory added; 16384: 64 KiB.
  for (const int64_t cols : {12288, 16384}) {
    const Inputs in = makeInputs(3, cols, at::kBFloat16, at::kBFloat16, 11);
    expectMatches(runBf16(in, stream_), in, "hidden " + std::to_string(cols));
  }
  const int64_t too_wide = int64_t{1} << 22;  // 16 MiB per row: beyond any device's shared memory
  const DeviceBytes buffer(too_wide * 2), weight(too_wide * 4);
  EXPECT_THROW(cuda::fusedAddRmsNormForward(buffer.as<__nv_bfloat16>(), buffer.as<__nv_bfloat16>(), weight.as<float>(),
                                            buffer.as<__nv_bfloat16>(), buffer.as<__nv_bfloat16>(), nullptr, 1,
                                            too_wide, kEps, stream_),
               InputError);
}

TEST_F(CudaFusedAddRmsNormTest, InPlaceEqualsOutOfPlaceAndRunsAreBitwiseEqual) {
  const Inputs in = makeInputs(1024, 4096, at::kBFloat16, at::kBFloat16, 3);
  const Outputs first = runBf16(in, stream_);
  const Outputs second = runBf16(in, stream_);
  EXPECT_TRUE(at::equal(first.out, second.out) && at::equal(first.residual_out, second.residual_out));
  const DeviceBytes x(in.x), residual(in.residual), weight(in.weight);
  auto* x_ptr = x.as<__nv_bfloat16>();
  auto* res_ptr = residual.as<__nv_bfloat16>();
  cuda::fusedAddRmsNormForward(x_ptr, res_ptr, weight.as<float>(), x_ptr, res_ptr, nullptr, 1024, 4096, kEps, stream_);
  EXPECT_TRUE(at::equal(x.toHost({1024, 4096}, at::kBFloat16), first.out));
  EXPECT_TRUE(at::equal(residual.toHost({1024, 4096}, at::kBFloat16), first.residual_out));
}

TEST_F(CudaFusedAddRmsNormTest, Float32KernelWithoutRstdMatchesTheReference) {
  for (const int64_t cols : {64, 4096, 8192}) {
    for (const int64_t rows : {1, 7, 1024, 4099}) {
      SCOPED_TRACE("fp32 [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
      const Inputs in = makeInputs(rows, cols, at::kFloat, at::kFloat, rows + cols);
      const DeviceBytes x(in.x), residual(in.residual), weight(in.weight), y(in.x.nbytes());
      // residual_out == residual: the fused all-reduce paths update the residual in place.
      cuda::fusedAddRmsNormForward(x.as<float>(), residual.as<float>(), weight.as<float>(), y.as<float>(),
                                   residual.as<float>(), nullptr, rows, cols, kEps, stream_);
      const auto [out, residual_out, rstd] = reference(in);
      EXPECT_TRUE(allClose(y.toHost({rows, cols}, at::kFloat), out, kFp32Tol, kFp32Tol));
      EXPECT_TRUE(allClose(residual.toHost({rows, cols}, at::kFloat), residual_out, kFp32Tol, kFp32Tol));
    }
  }
}

TEST_F(CudaFusedAddRmsNormTest, WidensBfloat16ToFloatExactly) {
  const at::Tensor host = at::randn({4099}).to(at::kBFloat16);
  const DeviceBytes in(host), out(host.numel() * 4);
  cuda::bfloat16ToFloat(in.as<__nv_bfloat16>(), out.as<float>(), host.numel(), stream_);
  EXPECT_TRUE(at::equal(out.toHost({host.numel()}, at::kFloat), host.to(at::kFloat)));
}

}  // namespace
}  // namespace loom::kernels
