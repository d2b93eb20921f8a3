#include "kernels/torch/rms_norm_launch.h"

#include "kernels/cpu/rms_norm.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#if LOOM_KERNELS_TORCH_CUDA
#include "kernels/cuda/rms_norm.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loom::kernels::detail {
namespace {

int64_t rowsOf(const at::Tensor& x) {
  return x.numel() / x.size(-1);
}

template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

#if LOOM_KERNELS_TORCH_CUDA
void cudaForward(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight, double eps,
                 RmsNormForwardOutputs& out) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  if (residual.defined()) {
    cuda::fusedAddRmsNormForward(ptr<float>(x), ptr<float>(residual), ptr<float>(weight), ptr<float>(out.y),
                                 ptr<float>(out.residual_out), ptr<float>(out.rstd), rowsOf(x), x.size(-1), eps,
                                 stream);
  } else {
    cuda::rmsNormForward(ptr<float>(x), ptr<float>(weight), ptr<float>(out.y), ptr<float>(out.rstd), rowsOf(x),
                         x.size(-1), eps, stream);
  }
}

void cudaBackward(const at::Tensor& dy, const at::Tensor& dres, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& rstd, RmsNormGradients& grads) {
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const int64_t rows = rowsOf(x);
  const int64_t cols = x.size(-1);
  at::Tensor workspace;
  if (grads.dweight.defined()) {
    const auto bytes = static_cast<int64_t>(cuda::rmsNormBackwardWorkspaceBytes(rows, cols));
    workspace = at::empty({bytes}, x.options().dtype(at::kByte));
  }
  void* scratch = workspace.defined() ? workspace.data_ptr() : nullptr;
  if (dres.defined()) {
    cuda::fusedAddRmsNormBackward(ptr<float>(dy), ptr<float>(dres), ptr<float>(x), ptr<float>(weight), ptr<float>(rstd),
                                  ptr<float>(grads.dx), ptr<float>(grads.dweight), scratch, rows, cols, stream);
  } else {
    cuda::rmsNormBackward(ptr<float>(dy), ptr<float>(x), ptr<float>(weight), ptr<float>(rstd), ptr<float>(grads.dx),
                          ptr<float>(grads.dweight), scratch, rows, cols, stream);
  }
}
#endif

}  // namespace

RmsNormForwardOutputs runRmsNormForward(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                        double eps) {
  RmsNormForwardOutputs out;
  out.y = at::empty(x.sizes(), x.options());
  out.rstd = at::empty({rowsOf(x)}, x.options());
  if (residual.defined()) {
    out.residual_out = at::empty(x.sizes(), x.options());
  }
#if LOOM_KERNELS_TORCH_CUDA
  if (x.is_cuda()) {
    cudaForward(x, residual, weight, eps, out);
    return out;
  }
#endif
  TORCH_CHECK(x.is_cpu(), "loom::rms_norm: no kernel for device ", x.device());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "loom::rms_norm", [&] {
    if (residual.defined()) {
      cpu::fusedAddRmsNormForward<scalar_t>(ptr<scalar_t>(x), ptr<scalar_t>(residual), ptr<scalar_t>(weight),
                                            ptr<scalar_t>(out.y), ptr<scalar_t>(out.residual_out),
                                            ptr<scalar_t>(out.rstd), rowsOf(x), x.size(-1), eps);
    } else {
      cpu::rmsNormForward<scalar_t>(ptr<scalar_t>(x), ptr<scalar_t>(weight), ptr<scalar_t>(out.y),
                                    ptr<scalar_t>(out.rstd), rowsOf(x), x.size(-1), eps);
    }
  });
  return out;
}

RmsNormGradients runRmsNormBackward(const at::Tensor& dy, const at::Tensor& dresidual_out, const at::Tensor& x,
                                    const at::Tensor& weight, const at::Tensor& rstd, bool need_dweight) {
  RmsNormGradients grads;
  grads.dx = at::empty(x.sizes(), x.options());
  if (need_dweight) {
    grads.dweight = at::empty(weight.sizes(), weight.options());
  }
#if LOOM_KERNELS_TORCH_CUDA
  if (x.is_cuda()) {
    cudaBackward(dy, dresidual_out, x, weight, rstd, grads);
    return grads;
  }
#endif
  TORCH_CHECK(x.is_cpu(), "loom::rms_norm: no kernel for device ", x.device());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "loom::rms_norm_backward", [&] {
    if (dresidual_out.defined()) {
      cpu::fusedAddRmsNormBackward<scalar_t>(ptr<scalar_t>(dy), ptr<scalar_t>(dresidual_out), ptr<scalar_t>(x),
                                             ptr<scalar_t>(weight), ptr<scalar_t>(rstd), ptr<scalar_t>(grads.dx),
                                             ptr<scalar_t>(grads.dweight), rowsOf(x), x.size(-1));
    } else {
      cpu::rmsNormBackward<scalar_t>(ptr<scalar_t>(dy), ptr<scalar_t>(x), ptr<scalar_t>(weight), ptr<scalar_t>(rstd),
                                     ptr<scalar_t>(grads.dx), ptr<scalar_t>(grads.dweight), rowsOf(x), x.size(-1));
    }
  });
  return grads;
}

bool hasKernel(c10::Device device, c10::ScalarType dtype) {
  if (device.is_cpu()) {
    return dtype == at::kFloat || dtype == at::kDouble;
  }
#if LOOM_KERNELS_TORCH_CUDA
  if (device.is_cuda()) {
    return dtype == at::kFloat;
  }
#endif
  return false;
}

std::string supportedKernels() {
#if LOOM_KERNELS_TORCH_CUDA
  return "float32 and float64 on CPU, float32 on CUDA";
#else
  return "float32 and float64 on CPU (this build has no CUDA kernels: it needs "
         "LOOM_WITH_CUDA=ON and a CUDA-enabled libtorch)";
#endif
}

}  // namespace loom::kernels::detail
