// Chaos tests of elastic training under outer optimizers (issue 5: "during a
// DiLoCo sync"; docs/elastic.md "Outer optimizers"). 4 workers form 2 replicas
// of 2; the leader of replica 1 (worker 2) is killed while the replica
// leaders exchange (phase "outer" on a sync step) or, for the delayed
// algorithms, between syncs while an exchange is in flight. Replica 1 goes on
// with worker 3, which becomes its leader; the failure-free run's final weights
// must be reproduced within 1e-6 relative L2 and every step must commit once
// with its whole global batch. Losing all workers of a replica is the other
// case: the living replicas share the global batch from then on.
#include "tests/train/trainer/elastic_chaos_fixture.h"

#include <gmock/gmock.h>

#include <random>

namespace loom::train {
namespace {

using ::testing::HasSubstr;

struct OuterCase {
  const char* name;
  const char* sets;
  const char* fault;
};

TEST_F(ElasticChaosTest, OuterOptimizersSurviveALostReplicaLeader) {
  const std::string common = " --set outer.replicas=2 --set outer.sync_every=2";
  const OuterCase cases[] = {
      {"DiLoCo, killed during the sync at step 6", "--set outer.algorithm=DILOCO", "2:6:outer:KILL"},
      {"streaming DiLoCo, killed while fragment 1 is in flight", 
       "--set outer.algorithm=DILOCO --set outer.sync_every=4 --set outer.fragments=2 --set outer.fragment_delay=1",
       "2:6:forward:KILL"},
      {"async DiLoCo, killed while round 3's exchange is in flight", "--set outer.algorithm=DILOCO --set outer.delayed=true",
       "2:7:allreduce:KILL"},
      {"CO2, killed during the exchange at step 8", "--set outer.algorithm=CO2", "2:8:outer:KILL"},
      {"NoLoCo, killed during the sync at step 4", "--set outer.algorithm=NOLOCO --set outer.group_size=2",
       "2:4:outer:KILL"},
  };
  for (const OuterCase& c : cases) {
    const std::string sets = "--set parallel.zero1=false" + common + " " + c.sets;
    const std::string out = dir_->file("outer_" + std::to_string(&c - cases));
    const CommandResult result = run(out, sets, std::string("LOOM_FAULT_INJECT=") + c.fault);
    ASSERT_EQ(result.exit_code, 0) << c.name << "\n" << result.output;
    EXPECT_THAT(result.output, HasSubstr("lost worker(s) 2")) << c.name;
    EXPECT_THAT(result.output, HasSubstr("member(s) of replica 1 of 2")) << c.name;
    expectExactRun(out, sets, 14, c.name);
    const Metrics m = metricsOf(out);
    ASSERT_EQ(m.events.size(), 1u) << c.name;
    EXPECT_EQ(m.steps.back()["world"].get<int>(), 3) << c.name;
    EXPECT_EQ(m.steps.back()["layout"].get<std::string>(), "replicas=2 dp=2+1") << c.name;
  }
}

// Kills at seeded random points: any of workers 1-3 (a leader or not), any
// phase, any step, for synchronous DiLoCo syncing every 3 steps and for CO2.
TEST_F(ElasticChaosTest, OuterKillsAtSeededRandomPoints) {
  const char* phases[] = {"forward", "allreduce", "commit", "snapshot", "outer"};
  const char* algorithms[] = {"DILOCO", "CO2"};
  for (const uint32_t seed : {5u, 6u, 7u, 8u}) {
    std::mt19937 rng(seed);
    const int victim = 1 + static_cast<int>(rng() % 3);
    const int step = 2 + static_cast<int>(rng() % 11);
    const char* phase = phases[rng() % 5];
    const char* algorithm = algorithms[seed % 2];
    const std::string sets = std::string("--set parallel.zero1=false --set outer.replicas=2 --set outer.sync_every=3 "
                                         "--set outer.algorithm=") + algorithm;
    const std::string label = std::string(algorithm) + ": kill id " + std::to_string(victim) + " at step " +
                              std::to_string(step) + " " + phase + " (seed " + std::to_string(seed) + ")";
    const std::string out = dir_->file("outer_seed_" + std::to_string(seed));
    const std::string fault = std::to_string(victim) + ":" + std::to_string(step) + ":" + phase + ":KILL";
    const CommandResult result = run(out, sets, "LOOM_FAULT_INJECT=" + fault);
    ASSERT_EQ(result.exit_code, 0) << label << "\n" << result.output;
    EXPECT_THAT(result.output, HasSubstr("lost worker(s) " + std::to_string(victim))) << label;
    expectExactRun(out, sets, 14, label);
  }
}

// Elastic mode changes how replicas exchange (leaders, then a broadcast), not
// what they compute: a failure-free elastic run equals a plain one bit for bit.
TEST_F(ElasticChaosTest, ElasticOuterRunEqualsThePlainRun) {
  const std::string sets = "--set parallel.zero1=false --set outer.replicas=2 --set outer.sync_every=2 "
                           "--set outer.algorithm=DILOCO --set outer.delayed=true";
  const std::string out = dir_->file("outer_plain");
  const CommandResult result = run(out, sets + " --set elastic.policy=NONE");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  bool bitwise = false;
  EXPECT_EQ(relativeDistance(weightsOf(out + "/model.safetensors"), reference(sets), &bitwise), 0);
  EXPECT_TRUE(bitwise);
}

// A replica whose only worker dies is gone: 4 replicas of 1 become 3, which
// share every later step's global batch (4 samples each instead of 3), so no
// sample is lost or repeated; the trajectory differs from a failure-free run
// (one replica fewer averages), so weights are not compared.
TEST_F(ElasticChaosTest, LosingAWholeReplicaLeavesTheOthersTheGlobalBatch) {
  const std::string out = dir_->file("outer_vanished");
  const std::string sets = "--set parallel.zero1=false --set outer.algorithm=DILOCO --set outer.sync_every=2";
  const CommandResult result = run(out, sets, "LOOM_FAULT_INJECT=1:5:outer:KILL");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("member(s) of replica 0 of 3"));
  const Metrics m = metricsOf(out);
  ASSERT_EQ(m.steps.size(), 14u);
  for (size_t i = 0; i < m.steps.size(); ++i) {
    const int64_t step = static_cast<int64_t>(i) + 1;
    EXPECT_EQ(m.steps[i]["step"].get<int64_t>(), step);
    EXPECT_EQ(m.steps[i]["samples"].get<int64_t>(), kGlobalBatch) << "step " << step;
    const double first = static_cast<double>((step - 1) * kGlobalBatch);
    EXPECT_EQ(m.steps[i]["sample_sum"].get<double>(), kGlobalBatch * first + kGlobalBatch * (kGlobalBatch - 1) / 2.0)
        << "step " << step;
    EXPECT_TRUE(std::isfinite(m.steps[i]["loss"].get<double>())) << "step " << step;
  }
  EXPECT_EQ(m.steps.back()["layout"].get<std::string>(), "replicas=3 dp=1");
}

// Policy REPLACE with a join timeout: the replacement joins the replica that
// lost a worker, receives that replica's weights, inner and outer state from
// its survivor, and the run equals the failure-free one.
TEST_F(ElasticChaosTest, ReplacementRejoinsTheReplicaThatLostAWorker) {
  const std::string out = dir_->file("outer_replace");
  const std::string sets = "--set parallel.zero1=false --set outer.replicas=2 --set outer.sync_every=2 "
                           "--set outer.algorithm=DILOCO --set outer.delayed=true";
  const CommandResult result = run(out, sets + " --set elastic.policy=REPLACE --set elastic.join_timeout_s=60",
                                   "LOOM_FAULT_INJECT=2:5:forward:KILL", "--nproc-per-node 4 --max-restarts 1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("replacing rank 2 (id 2) with id 4"));
  EXPECT_THAT(result.output, HasSubstr("equal on the 2 member(s) of replica 1 of 2"));
  for (const nlohmann::json& step : metricsOf(out).steps) {
    EXPECT_EQ(step["layout"].get<std::string>(), "replicas=2 dp=2") << step.dump();
  }
  expectExactRun(out, sets, 14, "async DiLoCo replacement in the recovery");
}

}  // namespace
}  // namespace loom::train
