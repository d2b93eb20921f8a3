#include "kernels/torch/causal_softmax_launch.h"

#include "kernels/cpu/causal_softmax.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#if LOOM_KERNELS_TORCH_CUDA
#include "kernels/cuda/causal_softmax.cuh"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace loom::kernels::detail {
namespace {

/// The [matrices, q_len, k_len] view of a [..., q_len, k_len] tensor.
struct MatrixShape {
  int64_t matrices;
  int64_t q_len;
  int64_t k_len;
};

MatrixShape matrixShapeOf(const at::Tensor& t) {
  const int64_t q_len = t.size(-2);
  const int64_t k_len = t.size(-1);
  const int64_t per_matrix = q_len * k_len;
  return {per_matrix == 0 ? 0 : t.numel() / per_matrix, q_len, k_len};
}

#if LOOM_KERNELS_TORCH_CUDA
cudaStream_t currentStream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
#endif

}  // namespace

at::Tensor runCausalSoftmaxForward(const at::Tensor& scores, double scale) {
  at::Tensor probs = at::empty(scores.sizes(), scores.options());
  const MatrixShape shape = matrixShapeOf(scores);
#if LOOM_KERNELS_TORCH_CUDA
  if (scores.is_cuda()) {
    const c10::cuda::CUDAGuard guard(scores.device());
    cuda::causalSoftmaxForward(scores.data_ptr<float>(), probs.data_ptr<float>(), shape.matrices, shape.q_len,
                               shape.k_len, scale, currentStream(scores));
    return probs;
  }
#endif
  TORCH_CHECK(scores.is_cpu(), "loom::causal_softmax: no kernel for device ", scores.device());
  AT_DISPATCH_FLOATING_TYPES(scores.scalar_type(), "loom::causal_softmax", [&] {
    cpu::causalSoftmaxForward<scalar_t>(scores.data_ptr<scalar_t>(), probs.data_ptr<scalar_t>(), shape.matrices,
                                        shape.q_len, shape.k_len, scale);
  });
  return probs;
}

at::Tensor runCausalSoftmaxBackward(const at::Tensor& dprobs, const at::Tensor& probs, double scale) {
  at::Tensor dscores = at::empty(probs.sizes(), probs.options());
  const MatrixShape shape = matrixShapeOf(probs);
#if LOOM_KERNELS_TORCH_CUDA
  if (probs.is_cuda()) {
    const c10::cuda::CUDAGuard guard(probs.device());
    cuda::causalSoftmaxBackward(dprobs.data_ptr<float>(), probs.data_ptr<float>(), dscores.data_ptr<float>(),
                                shape.matrices, shape.q_len, shape.k_len, scale, currentStream(probs));
    return dscores;
  }
#endif
  TORCH_CHECK(probs.is_cpu(), "loom::causal_softmax: no kernel for device ", probs.device());
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "loom::causal_softmax_backward", [&] {
    cpu::causalSoftmaxBackward<scalar_t>(dprobs.data_ptr<scalar_t>(), probs.data_ptr<scalar_t>(),
                                         dscores.data_ptr<scalar_t>(), shape.matrices, shape.q_len, shape.k_len,
                                         scale);
  });
  return dscores;
}

}  // namespace loom::kernels::detail
