#include "train/trainer.h"

#include "runtime/config/loader.h"
#include "runtime/core/error.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <sstream>

namespace loom::train {
namespace {

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::writeCorpus(dir_.file("train.bin"), 40, 0);
    test::writeCorpus(dir_.file("val.bin"), 6, 1);
  }

  RunSummary runJob(
      const JobOptions& job, const std::function<bool()>& stop = [] { return false; }) {
    Trainer trainer(TrainerOptions{job, config::effectiveConfigText(job), ""}, *comm_, log_);
    return trainer.run(stop);
  }

  loom::test::TempDir dir_;
  std::ostringstream log_text_;
  Logger log_{log_text_, LoggerOptions{0, 1, LogLevel::kWarning}};
  std::unique_ptr<dist::Communicator> comm_ = dist::makeSelfCommunicator();
};

TEST_F(TrainerTest, ValidationLossFallsOnALearnableCorpus) {
  JobOptions job = test::smallJob(dir_.path());
  job.train.steps = 30;
  job.train.val_every = 30;
  const RunSummary summary = runJob(job);
  ASSERT_EQ(summary.val_losses.size(), 2u);
  EXPECT_EQ(summary.val_losses.front().first, 0);
  // Untrained loss is about ln(257) = 5.55; 30 steps on this corpus reach well below 3.
  EXPECT_NEAR(summary.val_losses.front().second, std::log(257.0), 0.3);
  EXPECT_LT(summary.val_losses.back().second, 3.0);
  EXPECT_TRUE(std::filesystem::exists(summary.final_weights));
}

TEST_F(TrainerTest, ResumingReproducesTheUninterruptedRunExactly) {
  JobOptions straight = test::smallJob(dir_.path());
  straight.train.out_dir = dir_.file("straight");
  const RunSummary full = runJob(straight);
  ASSERT_EQ(full.losses.size(), 12u);

  JobOptions split = test::smallJob(dir_.path());
  split.train.out_dir = dir_.file("split");
  int calls = 0;
  const RunSummary first = runJob(split, [&] { return ++calls == 6; });  // stop after step 6
  EXPECT_TRUE(first.stopped_early);
  EXPECT_EQ(first.last_step, 6);
  const RunSummary second = runJob(split);
  EXPECT_EQ(second.first_step, 6);
  EXPECT_EQ(second.last_step, 12);

  std::vector<double> resumed = first.losses;
  resumed.insert(resumed.end(), second.losses.begin(), second.losses.end());
  ASSERT_EQ(resumed.size(), full.losses.size());
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i], full.losses[i]) << "step " << i + 1;  // bitwise: same computation, same order
  }
  const checkpoint::NamedTensors a = checkpoint::readSafetensors(full.final_weights);
  const checkpoint::NamedTensors b_list = checkpoint::readSafetensors(second.final_weights);
  const std::map<std::string, at::Tensor> b(b_list.begin(), b_list.end());
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(at::equal(tensor, b.at(name))) << name;
  }
}

TEST_F(TrainerTest, MetricsLinesCarryTheDocumentedKeys) {
  const JobOptions job = test::smallJob(dir_.path());
  runJob(job);
  std::istringstream lines(loom::test::readTextFile(job.train.out_dir + "/metrics.jsonl"));
  std::string line;
  int steps = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("loss")) continue;  // the step-0 validation record
    ++steps;
    for (const char* key : {"step", "loss", "lr", "tokens", "tokens_per_s", "step_ms", "comm_ms", "exposed_comm_ms",
                            "mfu", "world", "layout", "bytes_tx", "bytes_rx"}) {
      EXPECT_TRUE(j.contains(key)) << key << " missing in " << line;
    }
    EXPECT_EQ(j["tokens"].get<int64_t>(), j["step"].get<int64_t>() * 8 * 16);
    EXPECT_EQ(j["world"].get<int>(), 1);
  }
  EXPECT_EQ(steps, 12);
}

TEST_F(TrainerTest, ResumeWithAnotherSeedIsRefused) {
  JobOptions job = test::smallJob(dir_.path());
  job.train.steps = 4;
  runJob(job);
  job.train.seed += 1;
  job.train.steps = 8;
  try {
    runJob(job);
    FAIL() << "resume with another seed was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("train.seed"), std::string::npos);
  }
}

TEST_F(TrainerTest, BadInitWeightsAreRejectedBeforeAnythingIsWritten) {
  JobOptions job = test::smallJob(dir_.path());
  // Weights for another width: every matrix has the wrong shape.
  JobOptions other = job;
  other.model.dim = 64;
  other.model.ffn_dim = 96;
  other.train.out_dir = dir_.file("other");
  runJob(other);
  try {
    Trainer trainer(TrainerOptions{job, "", other.train.out_dir + "/model.safetensors"}, *comm_, log_);
    FAIL() << "mismatched --init-from was accepted";
  } catch (const InputError& e) {
    const std::string msg = e.what_without_backtrace();
    EXPECT_NE(msg.find("--init-from"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tok_emb.weight"), std::string::npos) << msg;
  }
  EXPECT_FALSE(std::filesystem::exists(job.train.out_dir));
}

TEST_F(TrainerTest, InitFromReproducesTheSourceWeights) {
  JobOptions job = test::smallJob(dir_.path());
  job.train.steps = 2;
  const RunSummary source = runJob(job);
  JobOptions copy = job;
  copy.train.out_dir = dir_.file("copy");
  copy.train.seed = 99;  // a different init, overwritten by --init-from
  Trainer trainer(TrainerOptions{copy, "", source.final_weights}, *comm_, log_);
  const checkpoint::NamedTensors file = checkpoint::readSafetensors(source.final_weights);
  const std::map<std::string, at::Tensor> expected(file.begin(), file.end());
  const auto params = trainer.model().namedParameters();
  ASSERT_EQ(params.size(), expected.size());
  for (const auto& [name, param] : params) {
    ASSERT_TRUE(expected.count(name)) << name;
    EXPECT_TRUE(at::equal(param, expected.at(name))) << name;
  }
}

}  // namespace
}  // namespace loom::train
