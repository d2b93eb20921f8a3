#include "optim/grad_clip.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace loom::optim {
namespace {

TEST(GradClipTest, ScalesToMaxNormAndReturnsPreClipNorm) {
  at::Tensor a = at::zeros({2});
  at::Tensor b = at::zeros({1});
  at::Tensor no_grad = at::zeros({3});
  a.mutable_grad() = at::tensor({3.0f, 0.0f});
  b.mutable_grad() = at::tensor({4.0f});
  const double norm = clipGradNorm({a, b, no_grad}, 1.0);
  EXPECT_NEAR(norm, 5.0, 1e-12);
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(a.grad()[0].item<float>(), 3.0 * coef, 1e-6);
  EXPECT_NEAR(b.grad()[0].item<float>(), 4.0 * coef, 1e-6);
  EXPECT_NEAR(globalGradNorm({a, b}), 1.0, 1e-5);
}

TEST(GradClipTest, LeavesSmallGradientsAlone) {
  at::Tensor a = at::zeros({2});
  a.mutable_grad() = at::tensor({0.3f, 0.4f});
  EXPECT_NEAR(clipGradNorm({a}, 1.0), 0.5, 1e-7);
  EXPECT_FLOAT_EQ(a.grad()[1].item<float>(), 0.4f);
  EXPECT_NEAR(clipGradNorm({a}, 0.0), 0.5, 1e-7);  // 0 disables clipping
  EXPECT_FLOAT_EQ(a.grad()[1].item<float>(), 0.4f);
}

}  // namespace
}  // namespace loom::optim
