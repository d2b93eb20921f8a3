// Chaos tests of elastic training (issue 5, parallel_elastic.md §6 tests
// 16-20 and 22) with real processes: loom-launch runs 4 loom-train workers and
// one of them is killed at a chosen phase of a chosen step (LOOM_FAULT_INJECT,
// train/fault_injection.h) or from outside at a random point. Every run must
// finish every step with every sample of each step computed exactly once (the
// commit vote counts them: samples and the sum of their ids, logged per step)
// and end with the weights of a failure-free 4-rank run within 1e-6 relative
// L2 (not bitwise: after a loss, 3 ranks sum the same gradients in another
// grouping; measured about 2e-8).
#include "tests/train/trainer/elastic_chaos_fixture.h"
#include "train/checkpoint/checkpoint.h"

#include <gmock/gmock.h>

#include <filesystem>
#include <random>
#include <regex>

namespace loom::train {
namespace {

using ::testing::HasSubstr;

// SIGKILL one of 4 ranks in each phase of a step, with and without ZeRO-1
// (whose optimizer shard only the victim and its buddy hold), at steps and
// victims drawn from seeds.
TEST_F(ElasticChaosTest, KillOneOfFourInEveryPhaseOfAStep) {
  int run_index = 0;
  for (const char* phase : {"forward", "allreduce", "commit", "snapshot"}) {
    for (const bool zero1 : {true, false}) {
      const uint32_t seed = static_cast<uint32_t>(17 * run_index + 3);
      std::mt19937 rng(seed);
      const int victim = 1 + static_cast<int>(rng() % 3);
      const int step = 2 + static_cast<int>(rng() % 11);
      const std::string sets = std::string("--set parallel.zero1=") + (zero1 ? "true" : "false");
      const std::string label = std::string(phase) + (zero1 ? " zero1" : " replicated") + " kill id " +
                                std::to_string(victim) + " at step " + std::to_string(step) + " (seed " +
                                std::to_string(seed) + ")";
      const std::string out = dir_->file("phase_" + std::to_string(run_index++));
      const std::string fault = std::to_string(victim) + ":" + std::to_string(step) + ":" + phase + ":KILL";
      const CommandResult result = run(out, sets, "LOOM_FAULT_INJECT=" + fault);
      ASSERT_EQ(result.exit_code, 0) << label << "\n" << result.output;
      EXPECT_THAT(result.output, HasSubstr("was killed by SIGKILL: lost")) << label;
      EXPECT_THAT(result.output, HasSubstr("lost worker(s) " + std::to_string(victim))) << label;
      expectExactRun(out, sets, 14, label);
      const Metrics m = metricsOf(out);
      ASSERT_FALSE(m.events.empty()) << label;
      EXPECT_EQ(m.events.front()["lost"], nlohmann::json::array({victim})) << label;
      EXPECT_EQ(m.steps.back()["world"].get<int>(), 3) << label;
    }
  }
}

// SIGKILL from outside, at a point of the run drawn from a seed (the worker
// script kills loom-train once the metrics file has that many lines).
TEST_F(ElasticChaosTest, KillFromOutsideAtRandomPoints) {
  for (const uint32_t seed : {11u, 12u, 13u}) {
    std::mt19937 rng(seed);
    const int victim = 1 + static_cast<int>(rng() % 3);
    const int after_lines = 2 + static_cast<int>(rng() % 10);
    const std::string out = dir_->file("outside_" + std::to_string(seed));
    const std::string worker = dir_->file("kill_" + std::to_string(seed) + ".sh");
    loom::test::writeTextFile(worker, "#!/bin/sh\n"
                                      "if [ \"$RANK\" != " + std::to_string(victim) + " ]; then exec \"$@\"; fi\n"
                                      "\"$@\" & pid=$!\n"
                                      "until [ -f " + shellQuote(out + "/metrics.jsonl") + " ] && [ \"$(wc -l < " +
                                      shellQuote(out + "/metrics.jsonl") + ")\" -ge " + std::to_string(after_lines) +
                                      " ]; do sleep 0.001; done\n"
                                      "kill -9 $pid\nwait $pid\n");
    const std::string label = "outside kill of rank " + std::to_string(victim) + " after " +
                              std::to_string(after_lines) + " metrics lines (seed " + std::to_string(seed) + ")";
    const CommandResult result =
        run(out, "--set parallel.zero1=true", "", "--nproc-per-node 4", "sh " + shellQuote(worker));
    ASSERT_EQ(result.exit_code, 0) << label << "\n" << result.output;
    EXPECT_THAT(result.output, HasSubstr("lost worker(s) " + std::to_string(victim))) << label;
    expectExactRun(out, "--set parallel.zero1=true", 14, label);
  }
}

TEST_F(ElasticChaosTest, TwoFailuresInARow) {
  const std::string out = dir_->file("two");
  const std::string sets = "--set parallel.zero1=true";
  const CommandResult result = run(out, sets, "LOOM_FAULT_INJECT='1:5:forward:KILL;2:7:allreduce:KILL'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expectExactRun(out, sets, 14, "two failures in a row");
  const Metrics m = metricsOf(out);
  ASSERT_EQ(m.events.size(), 2u);
  EXPECT_EQ(m.events[0]["lost"], nlohmann::json::array({1}));
  EXPECT_EQ(m.events[1]["lost"], nlohmann::json::array({2}));
  EXPECT_EQ(m.steps.back()["world"].get<int>(), 2);
  EXPECT_EQ(m.steps.back()["generation"].get<int>(), 2);
}

// A stopped rank neither exits nor errors: only its silent heartbeat gives it
// away. The survivors evict it, the launcher kills it, the job goes on.
TEST_F(ElasticChaosTest, StoppedRankIsCaughtByTheHeartbeatTimeout) {
  const std::string out = dir_->file("stopped");
  const std::string sets = "--set parallel.zero1=true";
  const CommandResult result = run(out, sets, "LOOM_FAULT_INJECT=2:6:allreduce:STOP");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("rank 2 sent no heartbeat for"));
  EXPECT_THAT(result.output, HasSubstr("evicted by its peers"));
  expectExactRun(out, sets, 14, "SIGSTOP caught by heartbeat");
}

// Policy REPLACE with elastic.join_timeout_s: the survivors wait for the
// launcher's replacement, which takes the lost rank's place in the recovery's
// generation with a state hash equal to the others' (every member checks it
// before the first step), so the world never drops below 4.
TEST_F(ElasticChaosTest, ReplacementTakesTheLostRanksPlace) {
  const std::string out = dir_->file("replace_now");
  const std::string sets = "--set parallel.zero1=true";
  const CommandResult result =
      run(out, sets + " --set elastic.policy=REPLACE --set elastic.join_timeout_s=60",
          "LOOM_FAULT_INJECT=2:5:allreduce:KILL", "--nproc-per-node 4 --max-restarts 1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("replacing rank 2 (id 2) with id 4"));
  EXPECT_THAT(result.output, HasSubstr("equal on all 4 members"));
  const Metrics m = metricsOf(out);
  ASSERT_EQ(m.events.size(), 1u) << result.output;
  EXPECT_EQ(m.events[0]["lost"], nlohmann::json::array({2}));
  EXPECT_EQ(m.events[0]["joined"], nlohmann::json::array({4}));
  for (const nlohmann::json& step : m.steps) EXPECT_EQ(step["world"].get<int>(), 4) << step.dump();
  expectExactRun(out, sets, 14, "replacement in the recovery");
}

// Policy REPLACE without waiting: the survivors continue on 3 ranks and admit
// the replacement at a later step boundary (the commit vote carries "joiners
// waiting", so all members admit at the same step), restoring the world size.
// The weights are not compared with a failure-free run here: the replacement
// needs a few seconds to start, i.e. ~100 steps of this model on 3 ranks, and
// over that many steps float32 sums grouped for 3 ranks drift away from 4
// ranks' (measured 3e-4 relative after 200 steps; two failure-free runs on 3
// and 4 ranks differ by 5e-2); the handover itself is checked by the members'
// state hashes and by the sample accounting.
TEST_F(ElasticChaosTest, ReplacementJoinsLaterAndRestoresTheWorldSize) {
  const std::string out = dir_->file("replace_later");
  const CommandResult result = run(out, "--set parallel.zero1=true --set train.steps=200 --set elastic.policy=REPLACE",
                                   "LOOM_FAULT_INJECT=2:4:forward:KILL", "--nproc-per-node 4 --max-restarts 1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("replacing rank 2 (id 2) with id 4"));
  EXPECT_THAT(result.output, HasSubstr("equal on all 4 members"));
  const Metrics m = metricsOf(out);
  ASSERT_EQ(m.events.size(), 2u) << result.output;
  EXPECT_EQ(m.events[0]["event"], "recovery");
  EXPECT_EQ(m.events[0]["world"].get<int>(), 3);
  EXPECT_EQ(m.events[1]["event"], "admission");
  EXPECT_EQ(m.events[1]["joined"], nlohmann::json::array({4}));
  EXPECT_EQ(m.events[1]["world"].get<int>(), 4);
  ASSERT_EQ(m.steps.size(), 200u);
  for (size_t i = 0; i < m.steps.size(); ++i) {
    EXPECT_EQ(m.steps[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(m.steps[i]["samples"].get<int64_t>(), kGlobalBatch);
  }
  EXPECT_EQ(m.steps.back()["world"].get<int>(), 4);
  EXPECT_EQ(m.steps.back()["generation"].get<int>(), 2);
}

// ZeRO-1 keeps one copy of each shard, on the buddy: losing a rank and its
// buddy together loses that shard. The job stops with a message saying so and
// leaves its last checkpoint complete and loadable. (6 ranks: 4 survivors are
// a strict majority, so the quorum rule lets them try.)
TEST_F(ElasticChaosTest, LosingBothHoldersOfAShardStopsWithTheLastCheckpointIntact) {
  const std::string out = dir_->file("both");
  const CommandResult result = run(out, "--set parallel.zero1=true",
                                   "LOOM_FAULT_INJECT='1:8:forward:KILL;2:8:forward:KILL'", "--nproc-per-node 6");
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_THAT(result.output, HasSubstr("ZeRO-1 optimizer shard of worker(s) 1 is lost"));
  EXPECT_THAT(result.output, HasSubstr("the last checkpoint in"));
  const checkpoint::CheckpointStore store(out + "/checkpoints", 2);
  const std::optional<std::string> latest = store.latest();
  ASSERT_TRUE(latest.has_value());
  EXPECT_THAT(*latest, HasSubstr("step_00000005"));
  const checkpoint::TrainerState state = checkpoint::readTrainerState(*latest);
  EXPECT_EQ(state.step, 5);
  EXPECT_EQ(state.data_cursor, 5 * kGlobalBatch);
  EXPECT_FALSE(checkpoint::readSafetensors(checkpoint::checkpointFile(*latest, "model.safetensors")).empty());
  EXPECT_FALSE(checkpoint::readSafetensors(checkpoint::checkpointFile(*latest, "optimizer.safetensors")).empty());
  for (const auto& entry : std::filesystem::directory_iterator(out + "/checkpoints")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
}

// Below elastic.min_ranks the survivors write a durable checkpoint of the last
// committed step and stop with exit code 3 ("peer lost": a restart continues).
TEST_F(ElasticChaosTest, BelowTheMinimumTheJobStopsAfterADurableCheckpoint) {
  const std::string out = dir_->file("below");
  const CommandResult result =
      run(out, "--set parallel.zero1=true --set elastic.min_ranks=4", "LOOM_FAULT_INJECT=3:8:allreduce:KILL");
  EXPECT_EQ(result.exit_code, 3) << result.output;
  // Step 7 committed everywhere; its shard copy on the buddy may still have
  // been in flight when rank 3 died, and then the survivors roll back to 6.
  std::smatch match;
  ASSERT_TRUE(std::regex_search(result.output, match,
                                std::regex("below elastic.min_ranks \\(4\\): stopped after a durable checkpoint of step "
                                           "([0-9]+)")))
      << result.output;
  const int64_t step = std::stoll(match[1]);
  EXPECT_TRUE(step == 6 || step == 7) << step;
  const checkpoint::CheckpointStore store(out + "/checkpoints", 2);
  ASSERT_TRUE(store.latest().has_value());
  const checkpoint::TrainerState state = checkpoint::readTrainerState(*store.latest());
  EXPECT_EQ(state.step, step);
  EXPECT_EQ(state.data_cursor, step * kGlobalBatch);
}

}  // namespace
}  // namespace loom::train
