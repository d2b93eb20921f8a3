// Tensor parallelism as users run it (issue 7): loom-train with parallel.tp 2
// and 4 under loom-launch (Gloo) and mpirun (MPI), alone and with data
// parallelism (ZeRO-1 too), both sublayer ends, with and without token splitting. After 5
// steps the weights, and the checkpoint's optimizer state (gathered back to
// whole tensors), must equal a single-rank run over the same global batch:
// every tensor within 1e-5 relative L2 error.
#include "runtime/config/loader.h"
#include "runtime/core/build_config.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <tuple>
#include <vector>

namespace loom::train {
namespace {

using loom::test::CommandResult;
using loom::test::shellQuote;

constexpr double kTolerance = 1e-5;

std::map<std::string, at::Tensor> tensorsOf(const std::string& path) {
  const checkpoint::NamedTensors list = checkpoint::readSafetensors(path);
  return {list.begin(), list.end()};
}

// The one checkpoint a run with checkpoint_every 0 writes (at its end).
std::string checkpointFile(const std::string& out, const std::string& name) {
  for (const auto& entry : std::filesystem::directory_iterator(out + "/checkpoints")) {
    if (entry.is_directory()) return (entry.path() / name).string();
  }
  return "";
}

void expectEqualTensors(const std::string& got_path, const std::string& want_path, const std::string& what) {
  const auto got = tensorsOf(got_path);
  const auto want = tensorsOf(want_path);
  ASSERT_EQ(got.size(), want.size()) << what;
  for (const auto& [name, w] : want) {
    const at::Tensor g = got.at(name);
    ASSERT_EQ(g.sizes(), w.sizes()) << what << " " << name;
    if (!w.is_floating_point()) {
      EXPECT_TRUE(g.equal(w)) << what << " " << name;  // a range of a flat buffer
      continue;
    }
    // Relative L2; a tensor still all zeros (momentum before the first sync) must stay so.
    const double scale = std::max(w.norm().item<double>(), 1e-30);
    EXPECT_LE((g - w).norm().item<double>() / scale, kTolerance) << what << " " << name;
  }
}

struct Case {
  const char* name;
  const char* launch;  ///< "launch" or "mpirun"
  int world;
  const char* sets;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

class TensorParallelCliTest : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new loom::test::TempDir();
    test::writeCorpus(dir_->file("train.bin"), 40, 0);
    test::writeCorpus(dir_->file("val.bin"), 8, 1);
    JobOptions job = test::smallJob(dir_->path());
    job.model.kv_heads = 4;  // tp 4 splits every head (grouped-query heads are in model/tensor_parallel_test)
    job.train.steps = 5;
    job.train.global_batch = 12;
    job.train.micro_batch = 6;
    job.train.checkpoint_every = 0;
    job.train.val_every = 0;
    job.train.grad_clip = 0.5;  // clips: the norm sums the shards' squares over the group
    job.parallel.timeout_s = 60;
    loom::test::writeTextFile(dir_->file("job.pbtxt"), config::effectiveConfigText(job));
    const CommandResult one = run("", dir_->file("one"), "");
    ASSERT_EQ(one.exit_code, 0) << one.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static CommandResult run(const std::string& launcher, const std::string& out, const std::string& sets) {
    return loom::test::runCommand(launcher + " " + shellQuote(loom::test::loomBinary("loom-train")) + " --config " +
                                  shellQuote(dir_->file("job.pbtxt")) + " --set 'train.out_dir=\"" + out + "\"' " +
                                  sets);
  }

  static inline loom::test::TempDir* dir_ = nullptr;
};

TEST_P(TensorParallelCliTest, WeightsAndOptimizerStateAfterFiveStepsEqualOneRank) {
  const Case& c = GetParam();
  const std::string launcher =
      std::string(c.launch) == "mpirun"
          ? "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --bind-to none -np " +
                std::to_string(c.world)
          : shellQuote(loom::test::loomBinary("loom-launch")) + " --nproc-per-node " + std::to_string(c.world) + " --";
  const std::string out = dir_->file(c.name);
  const CommandResult result = run(launcher, out, c.sets);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("tensor parallel: dp="), std::string::npos) << result.output;
  // The stream's time is reported, its exposed part split into forward and backward.
  const std::string metrics = loom::test::readTextFile(out + "/metrics.jsonl");
  const auto last = nlohmann::json::parse(metrics.substr(metrics.rfind('{')));
  ASSERT_TRUE(last.contains("tp_comm_ms") && last.contains("tp_exposed_forward_ms")) << last.dump();
  EXPECT_GT(last["tp_comm_ms"].get<double>(), 0.0);
  EXPECT_LE(last["tp_exposed_forward_ms"].get<double>(), last["tp_exposed_ms"].get<double>());
  EXPECT_LE(last["tp_exposed_ms"].get<double>(), last["exposed_comm_ms"].get<double>());
  expectEqualTensors(out + "/model.safetensors", dir_->file("one/model.safetensors"), "final weights");
  expectEqualTensors(checkpointFile(out, "optimizer.safetensors"),
                     checkpointFile(dir_->file("one"), "optimizer.safetensors"), "optimizer state");
}

// Checkpoints hold whole tensors: a one-rank run's step-3 checkpoint resumes
// as a tensor-parallel pair (each rank cutting its shards of the weights and
// the optimizer state) and ends where the one-rank run ended.
TEST_F(TensorParallelCliTest, AOneRankCheckpointResumesAsATensorParallelPair) {
  const std::string out = dir_->file("resumed_as_pair");
  const CommandResult first = run("", out, "--set train.checkpoint_every=3");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // Back to step 3, as if the run had stopped there.
  std::filesystem::remove_all(out + "/checkpoints/step_00000005");
  std::filesystem::remove(out + "/model.safetensors");
  const CommandResult second = run(shellQuote(loom::test::loomBinary("loom-launch")) + " --nproc-per-node 2 --", out,
                                   "--set parallel.tp=2 --set parallel.token_split_min_tokens=64");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("resumed from"), std::string::npos) << second.output;
  expectEqualTensors(out + "/model.safetensors", dir_->file("one/model.safetensors"), "resumed weights");
}

// An outer optimizer over two replicas, each a tensor-parallel pair, equals
// the same optimizer over two one-rank replicas: the outer step averages each
// shard with the same shard of the other replica, and each replica's checkpoint
// file holds whole tensors (the flat outer buffers gathered parameter by
// parameter; streaming fragments cut at the same parameters in both layouts).
// With async and streaming DiLoCo, each layout's step-3 checkpoint (an
// exchange in flight) resumes in the other layout and ends where both end.
TEST_F(TensorParallelCliTest, OuterReplicasOfTensorParallelPairsEqualOneRankReplicas) {
  const std::string launch = shellQuote(loom::test::loomBinary("loom-launch")) + " --nproc-per-node ";
  struct Outer {
    std::string name, sets;
    bool resume;  ///< step 3 has an exchange in flight: resume each layout's checkpoint in the other
  };
  const std::string two_replicas = " --set outer.replicas=2 --set outer.sync_every=";
  for (const Outer& o : std::vector<Outer>{
           {"DiLoCo", "--set outer.algorithm=DILOCO" + two_replicas + "2", false},
           {"async DiLoCo", "--set outer.algorithm=DILOCO --set outer.delayed=true" + two_replicas + "2", true},
           {"streaming DiLoCo",
            "--set outer.algorithm=DILOCO --set outer.fragments=2 --set outer.fragment_delay=1" + two_replicas + "4",
            true},
           {"NoLoCo", "--set outer.algorithm=NOLOCO" + two_replicas + "2", false},
           {"CO2", "--set outer.algorithm=CO2" + two_replicas + "2", false}}) {
    const std::string two = dir_->file("outer_two"), pairs = dir_->file("outer_pairs");
    std::filesystem::remove_all(two);
    std::filesystem::remove_all(pairs);
    const std::string sets = o.sets + " --set train.checkpoint_every=3";
    const CommandResult ones = run(launch + "2 --", two, sets);
    ASSERT_EQ(ones.exit_code, 0) << ones.output;
    const CommandResult tps = run(launch + "4 --", pairs, sets + " --set parallel.tp=2");
    ASSERT_EQ(tps.exit_code, 0) << tps.output;
    expectEqualTensors(pairs + "/model.safetensors", two + "/model.safetensors", o.name + " final weights");
    for (const char* file : {"replica_0.safetensors", "replica_1.safetensors"}) {
      for (const char* step : {"step_00000003", "step_00000005"}) {
        const auto path = [&](const std::string& out) { return out + "/checkpoints/" + step + "/" + file; };
        expectEqualTensors(path(pairs), path(two), o.name + " " + step + " " + file);
      }
    }
    if (!o.resume) continue;
    const std::string expected = dir_->file("outer_expected.safetensors");
    std::filesystem::copy_file(two + "/model.safetensors", expected, std::filesystem::copy_options::overwrite_existing);
    for (const auto& [out, ranks, layout] :
         {std::make_tuple(pairs, "2", ""), std::make_tuple(two, "4", " --set parallel.tp=2")}) {
      std::filesystem::remove_all(out + "/checkpoints/step_00000005");
      std::filesystem::remove(out + "/model.safetensors");
      const CommandResult resumed = run(launch + ranks + " --", out, sets + layout);
      ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
      EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
      expectEqualTensors(out + "/model.safetensors", expected, o.name + " resumed on " + std::string(ranks) + " ranks");
    }
  }
}

std::vector<Case> layouts() {
  std::vector<Case> cases = {
        Case{"tp2_sequence_parallel_split", "launch", 2,
             "--set parallel.tp=2 --set parallel.token_split_min_tokens=64"},
        Case{"tp2_all_reduce_unsplit", "launch", 2,
             "--set parallel.tp=2 --set parallel.sequence_parallel=false --set parallel.token_split_min_tokens=0"},
        Case{"tp4_sequence_parallel_split", "launch", 4,
             "--set parallel.tp=4 --set parallel.token_split_min_tokens=64"},
        Case{"dp2_tp2_split", "launch", 4, "--set parallel.tp=2 --set parallel.token_split_min_tokens=64"},
        Case{"dp2_tp2_zero1", "launch", 4, "--set parallel.tp=2 --set parallel.zero1=true"}};
  // mpirun runs only where loom is built with MPI (which brings mpirun).
  if (LOOM_WITH_MPI) cases.push_back(Case{"dp2_tp2_mpi", "mpirun", 4, "--set parallel.tp=2 --set parallel.backend=MPI"});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layouts, TensorParallelCliTest, ::testing::ValuesIn(layouts()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace loom::train
