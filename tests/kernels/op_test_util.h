// Small helpers shared by the rope, causal_softmax and swiglu kernel tests.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace loom::test {

/// The value tolerance of the kernel tests: relative 1e-5 for float32, 1e-12 for float64.
inline double rtolFor(at::ScalarType dtype) {
  return dtype == at::kFloat ? 1e-5 : 1e-12;
}

/// A float64 autograd leaf holding t's values (the reference's input).
inline at::Tensor leafDouble(const at::Tensor& t) {
  return t.detach().to(at::kDouble).requires_grad_();
}

/// Restores the intra-op thread count when a test changes it.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(at::get_num_threads()) {}
  ~ThreadCountGuard() { at::set_num_threads(saved_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int saved_;
};

/// Expects `call` to throw c10::Error whose message contains `message`.
inline void expectError(const std::function<void()>& call, const std::string& message) {
  try {
    call();
    ADD_FAILURE() << "no error; expected: " << message;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(message), std::string::npos)
        << "got: " << e.what_without_backtrace() << "\nexpected to contain: " << message;
  }
}

}  // namespace loom::test
