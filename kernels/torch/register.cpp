// The `loom` operator namespace: torch.ops.loom.* in Python, c10::Dispatcher in C++.
//
// Compiled only into libloom_torch.so (loom/CMakeLists.txt), never into the static
// loom_kernels, so the library is defined exactly once per process. Other files add
// their ops with TORCH_LIBRARY_FRAGMENT(loom, m).
//
// Each op is bound as a catch-all kernel to the autograd-aware function, which picks
// the device kernel itself; autograd therefore works through the dispatcher too.
#include "kernels/torch/causal_softmax_ops.h"
#include "kernels/torch/rms_norm_ops.h"
#include "kernels/torch/rope_ops.h"
#include "kernels/torch/swiglu_ops.h"

#include <torch/library.h>

TORCH_LIBRARY(loom, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps=1e-05) -> Tensor", &loom::kernels::rmsNorm);
  m.def(
      "fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps=1e-05) -> "
      "(Tensor, Tensor)",
      &loom::kernels::fusedAddRmsNorm);
  m.def("rope(Tensor x, Tensor cos, Tensor sin, int start_pos=0) -> Tensor", &loom::kernels::rope);
  m.def("causal_softmax(Tensor scores, float scale) -> Tensor", &loom::kernels::causalSoftmax);
  m.def("swiglu(Tensor gate, Tensor up) -> Tensor", &loom::kernels::swiglu);
}
