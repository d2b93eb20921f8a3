// loom-train in document mode (context.mode STATIC / HDP; docs/hdp.md) as users
// run it, under loom-launch: 4 ranks planning each step's long-tail documents
// over context-parallel groups end with the weights of one process training on
// the same documents (within float32 summation order), and an elastic HDP run
// that loses a rank re-plans over the survivors, commits every step with every
// document once, and ends with the failure-free run's weights.
#include "runtime/config/loader.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/elastic_chaos_fixture.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/data/document_sampler.h"

#include <gmock/gmock.h>

namespace loom::train {
namespace {

using ::testing::HasSubstr;

constexpr double kTolerance = 1e-5;

class HdpTrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new loom::test::TempDir();
    test::writeCorpus(dir_->file("train.bin"), 60, 0);
    test::writeCorpus(dir_->file("val.bin"), 8, 1);
    job_ = new JobOptions(test::smallJob(dir_->path()));
    job_->model.max_seq_len = 256;
    job_->train.steps = 6;
    job_->train.checkpoint_every = 0;
    job_->parallel.timeout_s = 60;
    job_->context.mode = ContextMode::kHdp;
    job_->context.capacity = 32;  // a 128-token document needs all 4 ranks
    job_->context.tokens_per_step = 640;
    job_->context.median_tokens = 40;
    job_->context.sigma = 1.0;
    job_->context.min_tokens = 8;
    job_->context.max_tokens = 128;
    loom::test::writeTextFile(dir_->file("job.pbtxt"), config::effectiveConfigText(*job_));
  }
  static void TearDownTestSuite() {
    delete job_;
    delete dir_;
  }

  static CommandResult train(const std::string& out, int ranks, const std::string& sets, const std::string& env = "") {
    return loom::test::runCommand(env + " " + shellQuote(loom::test::loomBinary("loom-launch")) +
                                  " --grace-period 5 --nproc-per-node " + std::to_string(ranks) + " -- " +
                                  shellQuote(loom::test::loomBinary("loom-train")) + " --config " +
                                  shellQuote(dir_->file("job.pbtxt")) + " --set 'train.out_dir=\"" + out + "\"' " +
                                  sets);
  }

  static double distanceTo(const std::string& out, const std::string& reference, bool* bitwise) {
    return relativeDistance(weightsOf(out + "/model.safetensors"), weightsOf(reference + "/model.safetensors"),
                            bitwise);
  }

  static inline loom::test::TempDir* dir_ = nullptr;
  static inline JobOptions* job_ = nullptr;
};

// Four ranks as two tensor-parallel pairs: HDP and the static mesh plan over
// the pairs (two positions of 64-token capacity hold the longest document)
// and each pair runs its shards with ring attention between the pairs' same
// positions; every row splits into token halves (from 32 tokens), under ring
// attention too.
TEST_F(HdpTrainCliTest, TensorParallelPairsUnderHdpAndStaticMeshesEqualOneProcess) {
  const std::string single = dir_->file("single_for_tp");
  const CommandResult one = train(single, 1, "--set context.capacity=128");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  for (const char* mode : {"HDP", "STATIC"}) {
    const std::string out = dir_->file(std::string("tp2_") + mode);
    const CommandResult four =
        train(out, 4,
              std::string("--set parallel.tp=2 --set parallel.token_split_min_tokens=32 --set context.capacity=64 "
                          "--set context.mode=") +
                  mode);
    ASSERT_EQ(four.exit_code, 0) << four.output;
    EXPECT_THAT(four.output, HasSubstr("tensor parallel: dp=2 tp=2"));
    bool bitwise = false;
    const double distance = distanceTo(out, single, &bitwise);
    EXPECT_LE(distance, kTolerance) << mode;
    // The stream's exposed time, its forward part too, in document mode as well.
    const nlohmann::json last = metricsOf(out).steps.back();
    ASSERT_TRUE(last.contains("tp_exposed_forward_ms")) << last.dump();
    EXPECT_LE(last["tp_exposed_forward_ms"].get<double>(), last["tp_exposed_ms"].get<double>()) << mode;
    std::cout << "[ hdp      ] " << mode << " over 2 tensor-parallel pairs vs 1 process: relative L2 " << distance
              << "\n";
  }
}

TEST_F(HdpTrainCliTest, FourRanksOfHdpAndStaticMeshesEqualOneProcess) {
  // One rank holds every document (capacity 128): no context parallelism at all.
  const std::string single = dir_->file("single");
  const CommandResult one = train(single, 1, "--set context.capacity=128");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  for (const char* mode : {"HDP", "STATIC"}) {
    const std::string out = dir_->file(std::string("four_") + mode);
    const CommandResult four = train(out, 4, std::string("--set context.mode=") + mode);
    ASSERT_EQ(four.exit_code, 0) << four.output;
    bool bitwise = false;
    const double distance = distanceTo(out, single, &bitwise);
    EXPECT_LE(distance, kTolerance) << mode;
    std::cout << "[ hdp      ] " << mode << " on 4 ranks vs 1 process: relative L2 " << distance << "\n";
    const Metrics m = metricsOf(out);
    ASSERT_EQ(m.steps.size(), 6u) << mode;
    EXPECT_EQ(m.steps.back()["tokens"].get<int64_t>(), 6 * 640) << mode;
  }
}

// Every rank plans alone; the first plan's hash is compared across ranks, so
// ranks that see other documents (here rank 1 with another seed) stop at once
// with a message saying so, instead of training on mismatched groups.
TEST_F(HdpTrainCliTest, RanksThatPlanDifferentlyStopWithAClearError) {
  const std::string wrapper = dir_->file("other_seed.sh");
  loom::test::writeTextFile(wrapper, "#!/bin/sh\nif [ \"$RANK\" = 1 ]; then exec \"$@\" --set train.seed=99; fi\n"
                                     "exec \"$@\"\n");
  const std::string out = dir_->file("mismatch");
  const CommandResult result = loom::test::runCommand(
      shellQuote(loom::test::loomBinary("loom-launch")) + " --grace-period 5 --nproc-per-node 2 -- sh " +
      shellQuote(wrapper) + " " + shellQuote(loom::test::loomBinary("loom-train")) + " --config " +
      shellQuote(dir_->file("job.pbtxt")) + " --set 'train.out_dir=\"" + out + "\"' --set context.capacity=64");
  EXPECT_NE(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("the ranks do not see the same documents"));
}

// Elastic HDP: rank 2 of 4 is killed in step 3's forward; the survivors re-plan
// every later step over 3 ranks (groups of at most 2: context.capacity 64
// holds a 128-token document on 2 ranks) and finish with the failure-free
// weights. Every step commits once, with every document of it counted once.
TEST_F(HdpTrainCliTest, ElasticHdpReplansOverTheSurvivors) {
  const std::string sets =
      "--set context.capacity=64 --set elastic.policy=SHRINK --set elastic.min_ranks=2 "
      "--set elastic.heartbeat_interval_s=0.1 --set elastic.heartbeat_timeout_s=3";
  const std::string reference = dir_->file("elastic_reference");
  const CommandResult clean = train(reference, 4, sets);
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  const std::string out = dir_->file("elastic_kill");
  const CommandResult result = train(out, 4, sets, "LOOM_FAULT_INJECT=2:3:forward:KILL");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("lost worker(s) 2"));
  bool bitwise = false;
  const double distance = distanceTo(out, reference, &bitwise);
  EXPECT_LE(distance, kTolerance);
  std::cout << "[ hdp      ] elastic HDP, kill at step 3 vs failure-free: relative L2 " << distance
            << (bitwise ? " (bit-identical)" : " (not bit-identical)") << "\n";

  data::DocumentOptions docs;
  docs.lognormal_mu = std::log(40.0);
  docs.lognormal_sigma = 1.0;
  docs.min_tokens = 8;
  docs.max_tokens = 128;
  docs.tokens_per_step = 640;
  docs.seed = job_->train.seed;
  const data::DocumentSampler sampler(data::TokenShard::open(dir_->file("train.bin"), 257), docs);
  const Metrics m = metricsOf(out);
  ASSERT_EQ(m.steps.size(), 6u);
  for (size_t i = 0; i < m.steps.size(); ++i) {
    const auto n = static_cast<int64_t>(sampler.step(static_cast<int64_t>(i)).size());
    EXPECT_EQ(m.steps[i]["step"].get<int64_t>(), static_cast<int64_t>(i) + 1);
    EXPECT_EQ(m.steps[i]["samples"].get<int64_t>(), n) << "step " << i + 1;
    EXPECT_EQ(m.steps[i]["sample_sum"].get<double>(), static_cast<double>(n * (n - 1) / 2)) << "step " << i + 1;
  }
  EXPECT_EQ(m.steps.back()["world"].get<int>(), 3);
}

}  // namespace
}  // namespace loom::train
