// loom-train as users run it: a real process, real files, exit codes and signals.
#include "runtime/config/loader.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/data/shard_writer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace loom::train {
namespace {

using loom::test::CommandResult;
using loom::test::runCommand;
using loom::test::shellQuote;

constexpr int kBadInput = 2;

class LoomTrainCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::writeCorpus(dir_.file("train.bin"), 40, 0);
    test::writeCorpus(dir_.file("val.bin"), 6, 1);
    job_ = test::smallJob(dir_.path());
    job_.train.steps = 4;
    config_ = dir_.file("job.pbtxt");
    loom::test::writeTextFile(config_, config::effectiveConfigText(job_));
  }

  CommandResult train(const std::string& config, const std::string& extra = "") {
    return runCommand(shellQuote(loom::test::loomBinary("loom-train")) + " --config " + shellQuote(config) + " " +
                      extra);
  }

  // A finished run in out_dir: what bad inputs must leave untouched.
  std::string finishedRun() {
    const CommandResult ok = train(config_);
    EXPECT_EQ(ok.exit_code, 0) << ok.output;
    return loom::test::snapshotTree(job_.train.out_dir);
  }

  loom::test::TempDir dir_;
  JobOptions job_;
  std::string config_;
};

TEST_F(LoomTrainCliTest, TrainsPrintsProgressAndWritesOutputs) {
  const CommandResult r = train(config_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("effective config:"), std::string::npos);
  EXPECT_NE(r.output.find("step     4/4 | loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("validation loss before training"), std::string::npos);
  for (const char* name : {"config.pbtxt", "metrics.jsonl", "model.safetensors", "checkpoints/step_00000004"}) {
    EXPECT_TRUE(std::filesystem::exists(job_.train.out_dir + "/" + name)) << name;
  }
}

TEST_F(LoomTrainCliTest, BadConfigsExitWithBadInputAndTouchNothing) {
  const std::string before = finishedRun();
  struct Case {
    std::string text;
    std::string expected;  // a substring of the error
  };
  const std::vector<Case> cases = {
      {"model {\n  dim: 32\n", "bad.pbtxt:3:1:"},           // missing closing brace
      {"model {\n  haeds: 4\n}\n", "bad.pbtxt:2:3:"},       // unknown field
      {"model {\n  dim: \"wide\"\n}\n", "bad.pbtxt:2:8:"},  // wrong type
  };
  for (const Case& c : cases) {
    loom::test::writeTextFile(dir_.file("bad.pbtxt"), c.text);
    const CommandResult r = train(dir_.file("bad.pbtxt"));
    EXPECT_EQ(r.exit_code, kBadInput) << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << r.output;
  }
  const CommandResult inconsistent = train(config_, "--set model.heads=3");
  EXPECT_EQ(inconsistent.exit_code, kBadInput);
  EXPECT_NE(inconsistent.output.find("model.heads (3) must divide model.dim (32)"), std::string::npos)
      << inconsistent.output;
  EXPECT_EQ(loom::test::snapshotTree(job_.train.out_dir), before);
}

TEST_F(LoomTrainCliTest, BadDataExitsWithBadInputAndTouchesNothing) {
  const std::string before = finishedRun();
  // Missing.
  CommandResult r = train(config_, "--set data.train_path=" + shellQuote(dir_.file("absent.bin")));
  EXPECT_EQ(r.exit_code, kBadInput);
  EXPECT_NE(r.output.find("data.train_path"), std::string::npos) << r.output;
  // Truncated: cut the last 100 bytes of a valid shard.
  const std::string cut = dir_.file("cut.bin");
  std::filesystem::copy_file(dir_.file("train.bin"), cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) - 100);
  r = train(config_, "--set data.train_path=" + shellQuote(cut));
  EXPECT_EQ(r.exit_code, kBadInput);
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  // A token id outside the model's vocabulary.
  {
    data::ShardWriter writer(dir_.file("wide.bin"));
    std::vector<uint16_t> tokens(400, 65);
    tokens[123] = 300;
    writer.addDocument(tokens, "wide");
    writer.finish();
  }
  r = train(config_, "--set data.train_path=" + shellQuote(dir_.file("wide.bin")));
  EXPECT_EQ(r.exit_code, kBadInput);
  EXPECT_NE(r.output.find("300"), std::string::npos) << r.output;
  EXPECT_EQ(loom::test::snapshotTree(job_.train.out_dir), before);
}

TEST_F(LoomTrainCliTest, BadInitWeightsAndUnwritableOutputExitWithBadInput) {
  const std::string before = finishedRun();
  loom::test::writeTextFile(dir_.file("junk.safetensors"), std::string("\x10\x00\x00\x00\x00\x00\x00\x00{bad", 12));
  CommandResult r = train(config_, "--init-from " + shellQuote(dir_.file("junk.safetensors")));
  EXPECT_EQ(r.exit_code, kBadInput) << r.output;
  EXPECT_NE(r.output.find("junk.safetensors"), std::string::npos) << r.output;
  EXPECT_EQ(loom::test::snapshotTree(job_.train.out_dir), before);

  r = train(config_, "--set train.out_dir=/proc/loom-no-such-dir/out");
  EXPECT_EQ(r.exit_code, kBadInput) << r.output;
  EXPECT_NE(r.output.find("train.out_dir"), std::string::npos) << r.output;
}

TEST_F(LoomTrainCliTest, SigtermFinishesTheStepCheckpointsAndExitsZeroThenResumes) {
  const std::string metrics = job_.train.out_dir + "/metrics.jsonl";
  const std::string script =
      shellQuote(loom::test::loomBinary("loom-train")) + " --config " + shellQuote(config_) +
      " --set train.steps=100000 --set train.checkpoint_every=0 & pid=$!; "
      "for i in $(seq 1 600); do [ \"$(grep -c '\"loss\"' " +
      shellQuote(metrics) +
      " 2>/dev/null)\" -ge 2 ] && break; sleep 0.1; done; kill -TERM $pid; wait $pid; echo \"EXIT=$?\"";
  const CommandResult r = runCommand(script);
  EXPECT_NE(r.output.find("EXIT=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stopped by signal 15"), std::string::npos) << r.output;
  int checkpoints = 0;
  for (const auto& e : std::filesystem::directory_iterator(job_.train.out_dir + "/checkpoints")) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "temporary left behind";
    ++checkpoints;
  }
  EXPECT_EQ(checkpoints, 1);
  const CommandResult resumed = train(config_, "--set train.steps=100000 --set train.steps=12");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
}

}  // namespace
}  // namespace loom::train
