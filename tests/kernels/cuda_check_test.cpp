// LOOM_CUDA_CHECK's error contract. Needs the CUDA runtime library but no GPU:
// error names and strings are static tables of the runtime.
#include "kernels/cuda/cuda_check.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::kernels::cuda {
namespace {

TEST(CudaCheckTest, SuccessDoesNotThrow) {
  EXPECT_NO_THROW(LOOM_CUDA_CHECK(cudaSuccess));
}

TEST(CudaCheckTest, FailureThrowsWithFileLineAndCudaMessage) {
  const int line = __LINE__ + 2;
  try {
    LOOM_CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "LOOM_CUDA_CHECK did not throw";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    EXPECT_NE(message.find(std::string("cuda_check_test.cpp:") + std::to_string(line)), std::string::npos) << message;
    EXPECT_NE(message.find("cudaErrorInvalidValue"), std::string::npos) << message;
    EXPECT_NE(message.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace loom::kernels::cuda
