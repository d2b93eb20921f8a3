// The CUDA kernels on device buffers against the CPU kernels (float32, rtol 1e-5;
// gradients also get an atol of rtol times their terms' magnitude, tensor_close.h),
// plus bitwise run-to-run determinism. Skips, with the reason, where no CUDA device
// is usable.
#include "kernels/cpu/rms_norm.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/rms_norm.cuh"

#include "tests/kernels/device_buffer.h"
#include "tests/kernels/rms_norm_reference.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace loom::kernels {
namespace {

using test::allClose;
using test::DeviceBuffer;

constexpr double kEps = 1e-5;
constexpr double kRtol = 1e-5;

class CudaRmsNormTest : public test::CudaStreamTest {};

struct KernelResult {
  at::Tensor y, residual_out, rstd, dx, dw;
};

KernelResult runCpu(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w, const at::Tensor& dy,
                    const at::Tensor& dres, bool fused) {
  const int64_t rows = x.size(0);
  const int64_t cols = x.size(1);
  KernelResult r{at::empty_like(x), at::empty_like(x), at::empty({rows}), at::empty_like(x), at::empty_like(w)};
  if (fused) {
    cpu::fusedAddRmsNormForward<float>(x.data_ptr<float>(), residual.data_ptr<float>(), w.data_ptr<float>(),
                                       r.y.data_ptr<float>(), r.residual_out.data_ptr<float>(),
                                       r.rstd.data_ptr<float>(), rows, cols, kEps);
    cpu::fusedAddRmsNormBackward<float>(dy.data_ptr<float>(), dres.data_ptr<float>(), r.residual_out.data_ptr<float>(),
                                        w.data_ptr<float>(), r.rstd.data_ptr<float>(), r.dx.data_ptr<float>(),
                                        r.dw.data_ptr<float>(), rows, cols);
  } else {
    cpu::rmsNormForward<float>(x.data_ptr<float>(), w.data_ptr<float>(), r.y.data_ptr<float>(),
                               r.rstd.data_ptr<float>(), rows, cols, kEps);
    cpu::rmsNormBackward<float>(dy.data_ptr<float>(), x.data_ptr<float>(), w.data_ptr<float>(),
                                r.rstd.data_ptr<float>(), r.dx.data_ptr<float>(), r.dw.data_ptr<float>(), rows, cols);
  }
  return r;
}

KernelResult runCuda(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w, const at::Tensor& dy,
                     const at::Tensor& dres, bool fused, cudaStream_t stream) {
  const int64_t rows = x.size(0);
  const int64_t cols = x.size(1);
  const DeviceBuffer d_x(x), d_res(residual), d_w(w), d_dy(dy), d_dres(dres);
  const DeviceBuffer d_y(rows * cols), d_res_out(rows * cols), d_rstd(rows);
  const DeviceBuffer d_dx(rows * cols), d_dw(cols);
  const size_t workspace_bytes = cuda::rmsNormBackwardWorkspaceBytes(rows, cols);
  const DeviceBuffer workspace(static_cast<int64_t>(workspace_bytes / sizeof(float)));
  if (fused) {
    cuda::fusedAddRmsNormForward(d_x.get(), d_res.get(), d_w.get(), d_y.get(), d_res_out.get(), d_rstd.get(), rows,
                                 cols, kEps, stream);
    cuda::fusedAddRmsNormBackward(d_dy.get(), d_dres.get(), d_res_out.get(), d_w.get(), d_rstd.get(), d_dx.get(),
                                  d_dw.get(), workspace.get(), rows, cols, stream);
  } else {
    cuda::rmsNormForward(d_x.get(), d_w.get(), d_y.get(), d_rstd.get(), rows, cols, kEps, stream);
    cuda::rmsNormBackward(d_dy.get(), d_x.get(), d_w.get(), d_rstd.get(), d_dx.get(), d_dw.get(), workspace.get(), rows,
                          cols, stream);
  }
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  return {d_y.toHost({rows, cols}), fused ? d_res_out.toHost({rows, cols}) : at::Tensor(), d_rstd.toHost({rows}),
          d_dx.toHost({rows, cols}), d_dw.toHost({cols})};
}

TEST_F(CudaRmsNormTest, MatchesCpuKernels) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},    {7, 1},      {1, 7},    {5, 33},
                                                           {64, 128}, {2048, 128}, {3, 8195}, {4096, 1024}};
  for (bool fused : {false, true}) {
    for (const auto& [rows, cols] : shapes) {
      SCOPED_TRACE(c10::str(fused ? "fused " : "plain ", rows, "x", cols));
      at::manual_seed(rows * 31 + cols);
      const at::Tensor x = at::randn({rows, cols});
      const at::Tensor residual = at::randn({rows, cols});
      const at::Tensor w = 1 + 0.5 * at::randn({cols});
      const at::Tensor dy = at::randn({rows, cols});
      const at::Tensor dres = at::randn({rows, cols});
      const KernelResult cpu = runCpu(x, residual, w, dy, dres, fused);
      const KernelResult gpu = runCuda(x, residual, w, dy, dres, fused, stream_);
      EXPECT_TRUE(allClose(gpu.y, cpu.y, kRtol, 0));
      EXPECT_TRUE(allClose(gpu.rstd, cpu.rstd, kRtol, 0));
      if (fused) {
        EXPECT_TRUE(at::equal(gpu.residual_out, cpu.residual_out));
      }
      const test::GradientScales scales = test::gradientScales(fused ? x + residual : x, w, dy, kEps);
      EXPECT_TRUE(allClose(gpu.dx, cpu.dx, kRtol, kRtol * scales.dx));
      EXPECT_TRUE(allClose(gpu.dw, cpu.dw, kRtol, kRtol * scales.dweight));
    }
  }
}

TEST_F(CudaRmsNormTest, RepeatedRunsAreBitwiseIdentical) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({3000, 257});
  const at::Tensor residual = at::randn({3000, 257});
  const at::Tensor w = at::randn({257});
  const at::Tensor dy = at::randn({3000, 257});
  const KernelResult first = runCuda(x, residual, w, dy, residual, /*fused=*/true, stream_);
  const KernelResult second = runCuda(x, residual, w, dy, residual, /*fused=*/true, stream_);
  EXPECT_TRUE(at::equal(first.y, second.y));
  EXPECT_TRUE(at::equal(first.dx, second.dx));
  EXPECT_TRUE(at::equal(first.dw, second.dw));
}

}  // namespace
}  // namespace loom::kernels
