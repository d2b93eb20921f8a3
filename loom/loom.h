// loom as a libtorch extension: the C++ entry point.
//
// Include this header and link libloom_torch.so (CMake: target_link_libraries(app
// PRIVATE loom_torch); by hand: -lloom_torch -ltorch -ltorch_cpu -lc10, with
// -Wl,--no-as-needed before -lloom_torch, since nothing names the registrations and an
// --as-needed linker would drop the library). Loading the library registers, in the
// `loom` operator namespace of the c10 dispatcher (torch.ops.loom.* in Python after
// torch.ops.load_library("libloom_torch.so")):
//
//   loom::rms_norm(Tensor x, Tensor weight, float eps=1e-05) -> Tensor
//   loom::fused_add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps=1e-05)
//       -> (Tensor out, Tensor residual_out)
//   loom::rope(Tensor x, Tensor cos, Tensor sin, int start_pos=0) -> Tensor
//   loom::causal_softmax(Tensor scores, float scale) -> Tensor
//   loom::swiglu(Tensor gate, Tensor up) -> Tensor
//
// The norms are differentiable with respect to every tensor input, rope with respect
// to x, causal_softmax to scores, swiglu to gate and up. The same ops are callable
// directly as the C++ functions declared below; docs/kernels.md has formulas,
// tolerances and examples. runtime/core/build_config.h tells which features
// (LOOM_WITH_CUDA, ...) this build has.
#pragma once

#include "kernels/torch/causal_softmax_ops.h"
#include "kernels/torch/rms_norm_ops.h"
#include "kernels/torch/rope_ops.h"
#include "kernels/torch/swiglu_ops.h"
#include "runtime/core/build_config.h"
