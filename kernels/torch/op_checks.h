// Internal to kernels/torch: argument checks shared by the rope, causal_softmax and
// swiglu ops. Each throws c10::Error (RuntimeError in Python) with a message that
// starts with the op name and carries the offending values. Not part of the public API.
#pragma once

#include <ATen/core/Tensor.h>

namespace loom::kernels::detail {

/// `t` (called `name` in the message) is a defined, dense (strided) tensor.
void checkDefinedDense(const char* op, const char* name, const at::Tensor& t);

/// `other` has the dtype and device of `ref`; both names appear in the message.
void checkSameDtypeAndDevice(const char* op, const char* name, const at::Tensor& other, const char* ref_name,
                             const at::Tensor& ref);

/// This build has a kernel for t's dtype on t's device.
void checkHasKernel(const char* op, const at::Tensor& t);

/// The kernels' gradients carry no autograd history, so a second derivative through
/// them would silently be zero: called first in every backward, it refuses a
/// backward run with create_graph=True.
void checkFirstOrder(const char* op);

}  // namespace loom::kernels::detail
