#include "kernels/cuda/cuda_check.h"

#include "runtime/core/error.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include <cstdint>

namespace loom::kernels::cuda {

void throwCudaError(cudaError_t status, const char* expr, const char* file, int line) {
  throw c10::Error(
      {"LOOM_CUDA_CHECK", file, static_cast<uint32_t>(line)},
      c10::str(file, ":", line, ": ", expr, " failed: ", cudaGetErrorName(status), ": ", cudaGetErrorString(status)));
}

void throwInvalidLaunch(const std::string& message, const char* file, int line) {
  throw InputError({"LOOM_CUDA_REQUIRE", file, static_cast<uint32_t>(line)}, c10::str(file, ":", line, ": ", message));
}

}  // namespace loom::kernels::cuda
