#include "kernels/torch/rope_launch.h"

#include "kernels/cpu/rope.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#if LOOM_KERNELS_TORCH_CUDA
#include "kernels/cuda/rope.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loom::kernels::detail {
namespace {

RopeLayout layoutOf(const at::Tensor& x) {
  RopeLayout layout;
  layout.batch = x.size(0);
  layout.seq = x.size(1);
  layout.heads = x.size(2);
  layout.head_dim = x.size(3);
  layout.batch_stride = x.stride(0);
  layout.seq_stride = x.stride(1);
  layout.head_stride = x.stride(2);
  return layout;
}

}  // namespace

at::Tensor runRope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool inverse) {
  at::Tensor out = at::empty(x.sizes(), x.options());  // contiguous, whatever x's strides
  const RopeLayout layout = layoutOf(x);
#if LOOM_KERNELS_TORCH_CUDA
  if (x.is_cuda()) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.device().index()).stream();
    if (inverse) {
      cuda::ropeBackward(x.data_ptr<float>(), layout, cos.data_ptr<float>(), sin.data_ptr<float>(),
                         out.data_ptr<float>(), stream);
    } else {
      cuda::ropeForward(x.data_ptr<float>(), layout, cos.data_ptr<float>(), sin.data_ptr<float>(),
                        out.data_ptr<float>(), stream);
    }
    return out;
  }
#endif
  TORCH_CHECK(x.is_cpu(), "loom::rope: no kernel for device ", x.device());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "loom::rope", [&] {
    if (inverse) {
      cpu::ropeBackward<scalar_t>(x.data_ptr<scalar_t>(), layout, cos.data_ptr<scalar_t>(), sin.data_ptr<scalar_t>(),
                                  out.data_ptr<scalar_t>());
    } else {
      cpu::ropeForward<scalar_t>(x.data_ptr<scalar_t>(), layout, cos.data_ptr<scalar_t>(), sin.data_ptr<scalar_t>(),
                                 out.data_ptr<scalar_t>());
    }
  });
  return out;
}

}  // namespace loom::kernels::detail
