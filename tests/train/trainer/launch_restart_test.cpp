// loom-launch restarting a real multi-rank loom-train job: rank 1 is killed with
// SIGKILL in the first attempt (after a checkpoint exists); the launcher reports
// it, stops the survivor, restarts both ranks, and the job resumes from the
// checkpoint and ends with exactly the weights of an uninterrupted run.
#include "runtime/config/loader.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>

namespace loom::train {
namespace {

using loom::test::CommandResult;
using loom::test::shellQuote;

std::map<std::string, at::Tensor> weightsOf(const std::string& path) {
  const checkpoint::NamedTensors list = checkpoint::readSafetensors(path);
  return {list.begin(), list.end()};
}

TEST(LaunchRestartTest, AKilledRankIsRestartedAndTheJobResumesExactly) {
  loom::test::TempDir dir;
  test::writeCorpus(dir.file("train.bin"), 40, 0);
  JobOptions job = test::smallJob(dir.path());
  job.data.val_path.clear();
  job.train.steps = 12;
  job.train.checkpoint_every = 2;
  const std::string config = dir.file("job.pbtxt");
  loom::test::writeTextFile(config, config::effectiveConfigText(job));
  const std::string train = shellQuote(loom::test::loomBinary("loom-train"));
  const std::string launch = shellQuote(loom::test::loomBinary("loom-launch")) + " --nproc-per-node 2 --grace-period 5";

  const CommandResult straight =
      loom::test::runCommand(launch + " -- " + train + " --config " + shellQuote(config) + " --set 'train.out_dir=\"" +
                             dir.file("straight") + "\"'");
  ASSERT_EQ(straight.exit_code, 0) << straight.output;

  // The worker: in attempt 0, rank 1 runs loom-train until checkpoint 4 exists, then kills it and itself.
  const std::string out = dir.file("restarted");
  const std::string worker = dir.file("worker.sh");
  loom::test::writeTextFile(worker, "#!/bin/sh\n"
                                    "if [ \"$TORCHELASTIC_RESTART_COUNT\" = 0 ] && [ \"$RANK\" = 1 ]; then\n"
                                    "  \"$@\" & pid=$!\n"
                                    "  while [ ! -d " + shellQuote(out + "/checkpoints/step_00000004") +
                                    " ]; do sleep 0.02; done\n"
                                    "  kill -9 $pid; kill -9 $$\n"
                                    "fi\n"
                                    "exec \"$@\"\n");
  const CommandResult restarted = loom::test::runCommand(
      launch + " --max-restarts 1 -- sh " + shellQuote(worker) + " " + train + " --config " + shellQuote(config) +
      " --set 'train.out_dir=\"" + out + "\"'");
  ASSERT_EQ(restarted.exit_code, 0) << restarted.output;
  EXPECT_NE(restarted.output.find("SIGKILL"), std::string::npos) << restarted.output;
  EXPECT_NE(restarted.output.find("will restart worker group"), std::string::npos) << restarted.output;
  EXPECT_NE(restarted.output.find("resumed from"), std::string::npos) << restarted.output;

  const auto expected = weightsOf(dir.file("straight/model.safetensors"));
  const auto actual = weightsOf(out + "/model.safetensors");
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [name, want] : expected) {
    EXPECT_TRUE(at::equal(actual.at(name), want)) << name;  // resume is exact: same computation, same order
  }
}

}  // namespace
}  // namespace loom::train
