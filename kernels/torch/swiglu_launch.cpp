#include "kernels/torch/swiglu_launch.h"

#include "kernels/cpu/swiglu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#if LOOM_KERNELS_TORCH_CUDA
#include "kernels/cuda/swiglu.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loom::kernels::detail {
namespace {

template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

#if LOOM_KERNELS_TORCH_CUDA
cudaStream_t currentStream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
#endif

}  // namespace

at::Tensor runSwigluForward(const at::Tensor& gate, const at::Tensor& up) {
  at::Tensor y = at::empty(gate.sizes(), gate.options());
#if LOOM_KERNELS_TORCH_CUDA
  if (gate.is_cuda()) {
    const c10::cuda::CUDAGuard guard(gate.device());
    cuda::swigluForward(ptr<float>(gate), ptr<float>(up), ptr<float>(y), gate.numel(), currentStream(gate));
    return y;
  }
#endif
  TORCH_CHECK(gate.is_cpu(), "loom::swiglu: no kernel for device ", gate.device());
  AT_DISPATCH_FLOATING_TYPES(gate.scalar_type(), "loom::swiglu", [&] {
    cpu::swigluForward<scalar_t>(ptr<scalar_t>(gate), ptr<scalar_t>(up), ptr<scalar_t>(y), gate.numel());
  });
  return y;
}

SwigluGradients runSwigluBackward(const at::Tensor& dy, const at::Tensor& gate, const at::Tensor& up,
                                  bool need_dgate, bool need_dup) {
  SwigluGradients grads;
  if (need_dgate) {
    grads.dgate = at::empty(gate.sizes(), gate.options());
  }
  if (need_dup) {
    grads.dup = at::empty(gate.sizes(), gate.options());
  }
#if LOOM_KERNELS_TORCH_CUDA
  if (gate.is_cuda()) {
    const c10::cuda::CUDAGuard guard(gate.device());
    cuda::swigluBackward(ptr<float>(dy), ptr<float>(gate), ptr<float>(up), ptr<float>(grads.dgate),
                         ptr<float>(grads.dup), gate.numel(), currentStream(gate));
    return grads;
  }
#endif
  TORCH_CHECK(gate.is_cpu(), "loom::swiglu: no kernel for device ", gate.device());
  AT_DISPATCH_FLOATING_TYPES(gate.scalar_type(), "loom::swiglu_backward", [&] {
    cpu::swigluBackward<scalar_t>(ptr<scalar_t>(dy), ptr<scalar_t>(gate), ptr<scalar_t>(up),
                                  ptr<scalar_t>(grads.dgate), ptr<scalar_t>(grads.dup), gate.numel());
  });
  return grads;
}

}  // namespace loom::kernels::detail
