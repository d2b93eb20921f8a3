// Outer optimizers as users run them: loom-train under loom-launch (Gloo) and
// mpirun (MPI), every algorithm, replicas of one and of several ranks, and
// resuming from a checkpoint taken between syncs.
#include "runtime/config/loader.h"
#include "runtime/core/build_config.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

namespace loom::train {
namespace {

using loom::test::CommandResult;
using loom::test::shellQuote;

std::map<std::string, at::Tensor> tensorsOf(const std::string& path) {
  const checkpoint::NamedTensors list = checkpoint::readSafetensors(path);
  return {list.begin(), list.end()};
}

// The model.* entries of a replica file.
std::map<std::string, at::Tensor> replicaWeights(const std::string& checkpoint_dir, int replica) {
  std::map<std::string, at::Tensor> weights;
  for (const auto& [name, t] : tensorsOf(checkpoint_dir + "/replica_" + std::to_string(replica) + ".safetensors")) {
    if (name.rfind("model.", 0) == 0) weights.emplace(name, t);
  }
  return weights;
}

bool sameTensors(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a) {
    if (b.count(name) == 0 || !at::equal(t, b.at(name))) return false;
  }
  return true;
}

std::vector<nlohmann::json> metricsOf(const std::string& out_dir) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(out_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

class OuterCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::writeCorpus(dir_.file("train.bin"), 40, 0);
    test::writeCorpus(dir_.file("val.bin"), 8, 5);
    JobOptions job = test::smallJob(dir_.path());
    job.train.steps = 8;
    job.train.checkpoint_every = 4;
    job.train.val_every = 4;
    job.logging.log_every = 4;
    config_ = dir_.file("job.pbtxt");
    loom::test::writeTextFile(config_, config::effectiveConfigText(job));
  }

  CommandResult launch(int ranks, const std::string& out, const std::string& sets, bool mpirun = false) {
    const std::string launcher =
        mpirun
            ? "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --bind-to none -np " +
                  std::to_string(ranks)
            : shellQuote(loom::test::loomBinary("loom-launch")) + " --nproc-per-node " + std::to_string(ranks) + " --";
    return loom::test::runCommand(launcher + " " + shellQuote(loom::test::loomBinary("loom-train")) + " --config " +
                                  shellQuote(config_) + " --set 'train.out_dir=\"" + out + "\"' " + sets);
  }

  loom::test::TempDir dir_;
  std::string config_;
};

struct Variant {
  std::string name;
  std::string sets;
  bool replicas_agree_at_the_end;  ///< the last step ends with every replica on the same weights
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class OuterAlgorithmTest : public OuterCliTest, public ::testing::WithParamInterface<Variant> {};

// Two replicas train 8 steps with sync_every 4: the job finishes, validation
// loss falls, each replica's state is checkpointed, and the replicas agree
// after the last sync (except under streaming, where one fragment syncs at a time).
TEST_P(OuterAlgorithmTest, TwoReplicasTrainAndCheckpoint) {
  const Variant& v = GetParam();
  const std::string out = dir_.file("out");
  const CommandResult result = launch(2, out, "--set outer.sync_every=4 " + v.sets);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("outer optimizer: 2 replica(s) of 1 rank(s)"), std::string::npos) << result.output;

  const std::vector<nlohmann::json> metrics = metricsOf(out);
  ASSERT_FALSE(metrics.empty());
  EXPECT_LT(metrics.back().at("val_loss").get<double>(), metrics.front().at("val_loss").get<double>());
  EXPECT_GT(metrics.back().at("bytes_tx").get<int64_t>(), 0);
  EXPECT_EQ(metrics.back().at("layout").get<std::string>(), "replicas=2 dp=1");

  const std::string last = out + "/checkpoints/step_00000008";
  const auto r0 = replicaWeights(last, 0);
  const auto r1 = replicaWeights(last, 1);
  ASSERT_FALSE(r0.empty());
  EXPECT_EQ(sameTensors(r0, r1), v.replicas_agree_at_the_end);
  // The checkpoint's model.safetensors is replica 0's weights.
  std::map<std::string, at::Tensor> model;
  for (const auto& [name, t] : tensorsOf(last + "/model.safetensors")) model.emplace("model." + name, t);
  EXPECT_TRUE(sameTensors(model, r0));
  EXPECT_FALSE(std::filesystem::exists(out + "/checkpoints/step_00000008.staging"));
}

INSTANTIATE_TEST_SUITE_P(
    Algorithms, OuterAlgorithmTest,
    ::testing::Values(Variant{"DiLoCoFp16", "--set outer.algorithm=DILOCO --set outer.codec=FP16", true},
                      Variant{"StreamingDiLoCo",
                              "--set outer.algorithm=DILOCO --set outer.fragments=2 --set outer.fragment_delay=1",
                              false},
                      Variant{"AsyncDiLoCoUint8",
                              "--set outer.algorithm=DILOCO --set outer.delayed=true --set outer.codec=UINT8_LUT",
                              true},
                      // Two replicas form NoLoCo's only pair: from a common start that is heavy-ball DiLoCo.
                      Variant{"NoLoCo", "--set outer.algorithm=NOLOCO", true},
                      Variant{"Co2", "--set outer.algorithm=CO2 --set outer.codec=BF16", true}),
    [](const auto& info) { return info.param.name; });

// Resuming from the step-4 checkpoint (taken while async DiLoCo's first
// average is still to be applied, or mid-NoLoCo) reproduces the uninterrupted
// run's final weights bit for bit.
TEST_F(OuterCliTest, ResumingBetweenSyncsIsExact) {
  for (const std::string sets : {"--set outer.algorithm=DILOCO --set outer.delayed=true --set outer.codec=FP16",
                                 "--set outer.algorithm=NOLOCO"}) {
    SCOPED_TRACE(sets);
    const std::string straight = dir_.file("straight");
    const std::string resumed = dir_.file("resumed");
    std::filesystem::remove_all(straight);
    std::filesystem::remove_all(resumed);
    const std::string common = "--set outer.sync_every=4 --set train.keep_checkpoints=3 " + sets;
    const CommandResult a = launch(2, straight, common);
    ASSERT_EQ(a.exit_code, 0) << a.output;
    std::filesystem::create_directories(resumed + "/checkpoints");
    std::filesystem::copy(straight + "/checkpoints/step_00000004", resumed + "/checkpoints/step_00000004",
                          std::filesystem::copy_options::recursive);
    const CommandResult b = launch(2, resumed, common);
    ASSERT_EQ(b.exit_code, 0) << b.output;
    EXPECT_NE(b.output.find("resumed from"), std::string::npos) << b.output;
    EXPECT_TRUE(sameTensors(tensorsOf(straight + "/model.safetensors"), tensorsOf(resumed + "/model.safetensors")));
    for (int replica : {0, 1}) {
      EXPECT_TRUE(sameTensors(
          tensorsOf(straight + "/checkpoints/step_00000008/replica_" + std::to_string(replica) + ".safetensors"),
          tensorsOf(resumed + "/checkpoints/step_00000008/replica_" + std::to_string(replica) + ".safetensors")))
          << "replica " << replica;
    }
  }
}

// Four ranks as two replicas of two: data parallelism with ZeRO-1 inside each
// replica, DiLoCo between them; under mpirun with the MPI backend too, where loom
// is built with MPI.
TEST_F(OuterCliTest, ReplicasOfSeveralRanksRunDataParallelInside) {
  for (bool mpirun : {false, true}) {
    if (mpirun && !LOOM_WITH_MPI) continue;
    SCOPED_TRACE(mpirun ? "mpirun MPI" : "loom-launch Gloo");
    const std::string out = dir_.file(mpirun ? "mpi" : "gloo");
    const CommandResult result =
        launch(4, out,
               std::string("--set outer.algorithm=DILOCO --set outer.sync_every=4 --set outer.replicas=2 ") +
                   "--set parallel.zero1=true" + (mpirun ? " --set parallel.backend=MPI" : ""),
               mpirun);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("outer optimizer: 2 replica(s) of 2 rank(s)"), std::string::npos) << result.output;
    const std::string last = out + "/checkpoints/step_00000008";
    EXPECT_TRUE(sameTensors(replicaWeights(last, 0), replicaWeights(last, 1)));
    EXPECT_FALSE(std::filesystem::exists(last + "/replica_2.safetensors"));
  }
}

// A replica count that does not divide the world stops before training with
// exit code 2 and a message naming the field.
TEST_F(OuterCliTest, ReplicasMustDivideTheWorld) {
  const CommandResult result = launch(2, dir_.file("bad"), "--set outer.algorithm=DILOCO --set outer.replicas=3");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("outer.replicas (3) must divide the world size (2)"), std::string::npos)
      << result.output;
}

}  // namespace
}  // namespace loom::train
