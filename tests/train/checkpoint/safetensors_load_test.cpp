#include "train/checkpoint/safetensors.h"

#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::checkpoint {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A small "model": a float parameter that requires grad, and an int buffer.
struct Model {
  at::Tensor weight = at::zeros({2, 3}).requires_grad_(true);
  at::Tensor steps = at::zeros({4}, at::kLong);
  NamedTensors targets() const { return {{"blocks.0.weight", weight}, {"steps", steps}}; }
};

class LoadSafetensorsTest : public ::testing::Test {
 protected:
  std::string write(const NamedTensors& tensors) {
    const std::string path = dir_.file("w.safetensors");
    writeSafetensors(path, tensors);
    return path;
  }

  // The InputError message of loading `tensors` into a fresh Model, which must stay untouched.
  std::string loadError(const NamedTensors& tensors) {
    const std::string path = write(tensors);
    Model model;
    try {
      loadSafetensorsInto(path, model.targets(), "--init-from");
      ADD_FAILURE() << "no InputError";
    } catch (const InputError& e) {
      EXPECT_TRUE(at::equal(model.weight, at::zeros({2, 3}))) << "a failed load modified a target";
      EXPECT_TRUE(at::equal(model.steps, at::zeros({4}, at::kLong))) << "a failed load modified a target";
      const std::string message = e.what_without_backtrace();
      EXPECT_THAT(message, AllOf(HasSubstr("--init-from: safetensors file \"" + path + "\" does not match the model"),
                                 HasSubstr("Pass a file written for this model configuration")));
      return message;
    }
    return "";
  }

  const at::Tensor weight_ = at::randn({2, 3});
  const at::Tensor steps_ = at::arange(4, at::kLong) * 7;
  test::TempDir dir_;
};

TEST_F(LoadSafetensorsTest, CopiesValuesIntoTheTargetsInPlace) {
  const std::string path = write({{"steps", steps_}, {"blocks.0.weight", weight_}});
  Model model;
  const void* weight_storage = model.weight.data_ptr();
  loadSafetensorsInto(path, model.targets(), "--init-from");
  EXPECT_TRUE(at::equal(model.weight, weight_));
  EXPECT_TRUE(at::equal(model.steps, steps_));
  EXPECT_EQ(model.weight.data_ptr(), weight_storage);
  EXPECT_TRUE(model.weight.requires_grad());
  EXPECT_TRUE(model.weight.is_leaf());
}

TEST_F(LoadSafetensorsTest, FillsNonContiguousTargets) {
  const std::string path = write({{"blocks.0.weight", weight_}, {"steps", steps_}});
  const at::Tensor storage = at::zeros({3, 2});
  const at::Tensor steps = at::zeros({8}, at::kLong);
  loadSafetensorsInto(path, {{"blocks.0.weight", storage.t()}, {"steps", steps.slice(0, 0, 8, 2)}}, "resume");
  EXPECT_TRUE(at::equal(storage, weight_.t()));
  EXPECT_TRUE(at::equal(steps.slice(0, 0, 8, 2), steps_));
  EXPECT_TRUE(at::equal(steps.slice(0, 1, 8, 2), at::zeros({4}, at::kLong)));
}

TEST_F(LoadSafetensorsTest, ListsMissingNames) {
  const std::string message = loadError({{"blocks.0.weight", weight_}});
  EXPECT_THAT(message, HasSubstr("missing (the model has them, the file does not): steps"));
  EXPECT_THAT(message, Not(HasSubstr("unexpected")));
}

TEST_F(LoadSafetensorsTest, ListsUnexpectedNames) {
  const std::string message =
      loadError({{"blocks.0.weight", weight_}, {"steps", steps_}, {"extra.bias", at::zeros({1})}});
  EXPECT_THAT(message, HasSubstr("unexpected (in the file, not in the model): extra.bias"));
  EXPECT_THAT(message, Not(HasSubstr("missing")));
}

TEST_F(LoadSafetensorsTest, ReportsEachShapeMismatch) {
  EXPECT_THAT(loadError({{"blocks.0.weight", at::zeros({3, 2})}, {"steps", steps_}}),
              HasSubstr("blocks.0.weight: shape [3, 2] in w.safetensors but the model expects [2, 3]"));
}

TEST_F(LoadSafetensorsTest, ReportsEachDtypeMismatch) {
  const std::string message = loadError({{"blocks.0.weight", weight_.to(at::kHalf)}, {"steps", steps_.to(at::kInt)}});
  EXPECT_THAT(message, AllOf(HasSubstr("blocks.0.weight: dtype F16 in w.safetensors but the model expects F32"),
                             HasSubstr("steps: dtype I32 in w.safetensors but the model expects I64")));
}

TEST_F(LoadSafetensorsTest, ReportsEveryKindOfProblemAtOnceAndCountsLongLists) {
  NamedTensors tensors = {{"blocks.0.weight", at::zeros({5})}};
  for (int i = 0; i < 13; ++i) tensors.emplace_back("stray." + std::to_string(i), at::zeros({1}));
  const std::string message = loadError(tensors);
  EXPECT_THAT(message, AllOf(HasSubstr("missing (the model has them, the file does not): steps"),
                             HasSubstr("stray.0, stray.1, stray.2"), HasSubstr(", ... (3 more)"),
                             HasSubstr("blocks.0.weight: shape [5] in w.safetensors but the model expects [2, 3]")));
}

}  // namespace
}  // namespace loom::checkpoint
