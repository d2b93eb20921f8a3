#include "train/checkpoint/checkpoint.h"

#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace loom::checkpoint {
namespace {

namespace fs = std::filesystem;

TrainerState stateAt(int64_t step) {
  TrainerState state;
  state.step = step;
  state.data_cursor = step * 16;
  state.tokens = step * 2048;
  state.seed = 1234;
  state.world_size = 1;
  state.rng_state = at::arange(0, 256, at::kLong).to(at::kByte);  // every byte value
  return state;
}

NamedTensors weights(float value) {
  return {{"w", at::full({2, 3}, value)}, {"g", at::full({3}, -value)}};
}

TEST(CheckpointStoreTest, SaveWritesACompleteDirectoryThatReadsBack) {
  test::TempDir dir;
  const CheckpointStore store(dir.file("checkpoints"), 2);
  EXPECT_FALSE(store.latest().has_value());
  const std::string path = store.save(weights(1.5f), weights(0.25f), stateAt(7), "train {\n  steps: 9\n}\n");
  EXPECT_EQ(fs::path(path).filename(), "step_00000007");
  ASSERT_EQ(store.latest(), path);

  const TrainerState read = readTrainerState(path);
  EXPECT_EQ(read.step, 7);
  EXPECT_EQ(read.data_cursor, 112);
  EXPECT_EQ(read.tokens, 7 * 2048);
  EXPECT_EQ(read.seed, 1234u);
  EXPECT_EQ(read.world_size, 1);
  EXPECT_TRUE(at::equal(read.rng_state, stateAt(7).rng_state));
  EXPECT_EQ(test::readTextFile(checkpointFile(path, "config.pbtxt")), "train {\n  steps: 9\n}\n");
  const NamedTensors model = readSafetensors(checkpointFile(path, "model.safetensors"));
  ASSERT_EQ(model.size(), 2u);
  EXPECT_TRUE(at::equal(model[0].second, at::full({2, 3}, 1.5f)));
  const NamedTensors optimizer = readSafetensors(checkpointFile(path, "optimizer.safetensors"));
  EXPECT_TRUE(at::equal(optimizer[1].second, at::full({3}, -0.25f)));
}

TEST(CheckpointStoreTest, KeepsTheNewestAndIgnoresThenRemovesCrashedTemporaries) {
  test::TempDir dir;
  const CheckpointStore store(dir.file("checkpoints"), 2);
  store.save(weights(1), weights(1), stateAt(10), "");
  store.save(weights(2), weights(2), stateAt(20), "");
  // A writer that crashed half-way through step 30 left its temporary behind.
  const std::string crashed = dir.file("checkpoints/step_00000030.tmp-999");
  fs::create_directories(crashed);
  test::writeTextFile(crashed + "/model.safetensors", "half");
  EXPECT_EQ(fs::path(*store.latest()).filename(), "step_00000020");

  store.save(weights(3), weights(3), stateAt(25), "");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.file("checkpoints"))) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000020", "step_00000025"}));
  EXPECT_EQ(fs::path(*store.latest()).filename(), "step_00000025");
}

TEST(CheckpointStoreTest, DamagedTrainerStateNamesTheFile) {
  test::TempDir dir;
  const CheckpointStore store(dir.file("checkpoints"), 1);
  const std::string path = store.save(weights(1), weights(1), stateAt(3), "");
  const std::string state_file = checkpointFile(path, "trainer.json");
  for (const std::string& text : {std::string("{\"step\": 3"), std::string("{\"format_version\": 1, \"step\": 3}"),
                                  std::string("{\"format_version\": 7}")}) {
    test::writeTextFile(state_file, text);
    try {
      readTrainerState(path);
      FAIL() << "accepted: " << text;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what_without_backtrace()).find(state_file), std::string::npos)
          << e.what_without_backtrace();
    }
  }
}

}  // namespace
}  // namespace loom::checkpoint
