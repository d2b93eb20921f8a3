#include "optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace loom::optim {
namespace {

TEST(LrScheduleTest, WarmupThenCosineToFloor) {
  OptimizerOptions o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_steps = 10;
  const int64_t total = 110;
  EXPECT_DOUBLE_EQ(learningRate(o, 0, total), 0.1);
  EXPECT_DOUBLE_EQ(learningRate(o, 4, total), 0.5);
  EXPECT_DOUBLE_EQ(learningRate(o, 9, total), 1.0);
  EXPECT_DOUBLE_EQ(learningRate(o, 10, total), 1.0);     // cos(0)
  EXPECT_NEAR(learningRate(o, 60, total), 0.55, 1e-12);  // half-way: (lr + min) / 2
  EXPECT_NEAR(learningRate(o, 110, total), 0.1, 1e-12);  // the floor
  EXPECT_NEAR(learningRate(o, 500, total), 0.1, 1e-12);  // clamped past the end
  const double p = 25.0 / 100.0;
  EXPECT_NEAR(learningRate(o, 35, total), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * p)), 1e-12);
}

TEST(LrScheduleTest, NoWarmupStartsAtPeak) {
  OptimizerOptions o;
  o.lr = 2.0;
  o.min_lr = 0.0;
  o.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(learningRate(o, 0, 10), 2.0);
  EXPECT_NEAR(learningRate(o, 5, 10), 1.0, 1e-12);
}

}  // namespace
}  // namespace loom::optim
