#include "kernels/torch/op_checks.h"

#include "kernels/torch/rms_norm_launch.h"

#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

namespace loom::kernels::detail {

void checkDefinedDense(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a defined tensor");
  TORCH_CHECK(t.layout() == at::kStrided, op, ": ", name, " must be a dense (strided) tensor, got layout ",
              t.layout());
}

void checkSameDtypeAndDevice(const char* op, const char* name, const at::Tensor& other, const char* ref_name,
                             const at::Tensor& ref) {
  TORCH_CHECK(other.device() == ref.device(), op, ": ", name, " is on ", other.device(), " but ", ref_name, " is on ",
              ref.device(), "; move both to one device");
  TORCH_CHECK(other.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", other.scalar_type(), " but ",
              ref_name, " has ", ref.scalar_type(), "; cast both to one dtype");
}

void checkHasKernel(const char* op, const at::Tensor& t) {
  TORCH_CHECK(hasKernel(t.device(), t.scalar_type()), op, ": no kernel for dtype ", t.scalar_type(), " on ",
              t.device(), "; supported: ", supportedKernels());
}

void checkFirstOrder(const char* op) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op,
              ": double backward is not supported (backward ran with create_graph=True); "
              "differentiate the plain-libtorch composite instead");
}

}  // namespace loom::kernels::detail
