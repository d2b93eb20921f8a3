// Data parallelism as users run it: loom-train under loom-launch (Gloo) and under
// mpirun (MPI backend, and Gloo with the store address bootstrapped over MPI),
// with 2, 3 and 4 ranks, with and without ZeRO-1. After 5 steps the weights must
// equal a single-rank run over the same global batch: every tensor within 1e-5
// relative L2 error (measured: about 2e-6 for 3 and 4 ranks, 0 for 2; float32
// sums grouped differently per rank, amplified by AdamW's normalisation).
#include "runtime/config/loader.h"
#include "runtime/core/build_config.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <tuple>
#include <vector>

namespace loom::train {
namespace {

using loom::test::CommandResult;
using loom::test::shellQuote;

enum class Launch { kLoomLaunchGloo, kMpirunMpi, kMpirunGloo };

std::string launchName(Launch launch) {
  switch (launch) {
    case Launch::kLoomLaunchGloo:
      return "LoomLaunchGloo";
    case Launch::kMpirunMpi:
      return "MpirunMpi";
    case Launch::kMpirunGloo:
      return "MpirunGloo";
  }
  return "?";
}

// The job of every run: only out_dir, the backend and zero1 change.
JobOptions equivalenceJob(const std::string& dir) {
  JobOptions job = test::smallJob(dir);
  job.data.val_path.clear();
  job.train.steps = 5;
  job.train.global_batch = 12;  // divisible by 1..4 ranks
  job.train.micro_batch = 6;    // 2 micro-batches on one rank, one pass per rank on 2, 3, 4
  job.train.checkpoint_every = 0;
  return job;
}

std::map<std::string, at::Tensor> weightsOf(const std::string& path) {
  const checkpoint::NamedTensors list = checkpoint::readSafetensors(path);
  return {list.begin(), list.end()};
}

class DataParallelCliTest : public ::testing::TestWithParam<std::tuple<Launch, int, bool>> {
 protected:
  void SetUp() override {
    test::writeCorpus(dir_.file("train.bin"), 40, 0);
    JobOptions job = equivalenceJob(dir_.path());
    config_ = dir_.file("job.pbtxt");
    loom::test::writeTextFile(config_, config::effectiveConfigText(job));
  }

  CommandResult run(const std::string& launcher, const std::string& out, const std::string& sets) {
    return loom::test::runCommand(launcher + " " + shellQuote(loom::test::loomBinary("loom-train")) + " --config " +
                                  shellQuote(config_) + " --set 'train.out_dir=\"" + out + "\"' " + sets);
  }

  loom::test::TempDir dir_;
  std::string config_;
};

TEST_P(DataParallelCliTest, WeightsAfterFiveStepsEqualOneRank) {
  const auto [launch, world, zero1] = GetParam();
  const CommandResult reference = run("", dir_.file("one"), "");
  ASSERT_EQ(reference.exit_code, 0) << reference.output;

  std::string launcher;
  std::string sets = std::string("--set parallel.zero1=") + (zero1 ? "true" : "false");
  if (launch == Launch::kLoomLaunchGloo) {
    launcher = shellQuote(loom::test::loomBinary("loom-launch")) + " --nproc-per-node " + std::to_string(world) + " --";
  } else {
    launcher = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --bind-to none -np " +
               std::to_string(world);
    if (launch == Launch::kMpirunMpi) sets += " --set parallel.backend=MPI";
  }
  const CommandResult result = run(launcher, dir_.file("many"), sets);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find(launch == Launch::kMpirunMpi ? "backend mpi" : "backend gloo"), std::string::npos)
      << result.output;

  const auto expected = weightsOf(dir_.file("one/model.safetensors"));
  const auto actual = weightsOf(dir_.file("many/model.safetensors"));
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [name, want] : expected) {
    const at::Tensor got = actual.at(name);
    const double relative = (got - want).norm().item<double>() / want.norm().item<double>();
    EXPECT_LE(relative, 1e-5) << name;
  }

  // Optimizer state: all of it on every rank, or about 1/N of it per rank with ZeRO-1
  // (chunks are padded to a multiple of N, hence the 5% slack).
  const std::regex line(R"(optimizer state: ([0-9.e+-]+) MiB on the largest rank, ([0-9.e+-]+) MiB over)");
  std::smatch one, many;
  ASSERT_TRUE(std::regex_search(reference.output, one, line)) << reference.output;
  ASSERT_TRUE(std::regex_search(result.output, many, line)) << result.output;
  const double single = std::stod(one[1]);
  const double largest = std::stod(many[1]);
  if (zero1) {
    EXPECT_LE(largest, single / world * 1.05) << "ZeRO-1 state per rank";
    EXPECT_GE(largest, single / world * 0.95) << "ZeRO-1 state per rank";
  } else {
    EXPECT_DOUBLE_EQ(largest, single);
  }
}

// mpirun runs only where loom is built with MPI (which brings mpirun).
std::vector<Launch> launchesAndTheirBackends() {
  std::vector<Launch> launches = {Launch::kLoomLaunchGloo};
  if (LOOM_WITH_MPI) launches.push_back(Launch::kMpirunMpi);
  return launches;
}

INSTANTIATE_TEST_SUITE_P(
    RanksBackendsAndZero, DataParallelCliTest,
    ::testing::Combine(::testing::ValuesIn(launchesAndTheirBackends()), ::testing::Values(2, 3, 4), ::testing::Bool()),
    [](const auto& info) {
      return launchName(std::get<0>(info.param)) + std::to_string(std::get<1>(info.param)) + "Ranks" +
             (std::get<2>(info.param) ? "Zero1" : "Replicated");
    });

#if LOOM_WITH_MPI
// mpirun with the default (Gloo) backend: the store address comes over MPI.
INSTANTIATE_TEST_SUITE_P(MpirunGloo, DataParallelCliTest,
                         ::testing::Values(std::make_tuple(Launch::kMpirunGloo, 3, false)),
                         [](const auto&) { return std::string("MpirunGloo3Ranks"); });
#endif

}  // namespace
}  // namespace loom::train
