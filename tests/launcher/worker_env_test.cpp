// The worker environment: torchrun's variables with the values of the worker,
// replacing stale ones, and the thread defaults only where the user set none.
#include "launcher/worker_env.h"

#include "runtime/dist/identity.h"

#include <gtest/gtest.h>

#include <deque>

namespace loom::launcher {
namespace {

WorkerIdentity sampleIdentity() {
  WorkerIdentity id;
  id.rank = 5;
  id.local_rank = 1;
  id.world_size = 8;
  id.local_world_size = 4;
  id.group_rank = 1;
  id.group_world_size = 2;
  id.restart_count = 3;
  id.max_restarts = 7;
  id.run_id = "job42";
  id.master_addr = "10.0.0.1";
  id.master_port = 29400;
  id.error_file = "/tmp/x/error.json";
  return id;
}

// What the launcher writes is what a worker's rank identity reads back (runtime/dist/identity.h).
TEST(WorkerEnvTest, WorkersReadBackTheIdentityTheLauncherWrote) {
  const std::vector<std::string> env = workerEnvironment({"HOME=/root"}, sampleIdentity(), 3);
  std::deque<std::string> values;  // keeps every c_str() alive (a deque never moves its elements)
  const dist::RankIdentity id = dist::identityFromEnvironment([&](const char* name) -> const char* {
    const auto value = findVariable(env, name);
    if (!value) return nullptr;
    values.push_back(*value);
    return values.back().c_str();
  });
  EXPECT_EQ(id.source, "torchrun");
  EXPECT_EQ(id.rank, 5);
  EXPECT_EQ(id.world_size, 8);
  EXPECT_EQ(id.local_rank, 1);
  EXPECT_EQ(id.local_world_size, 4);
  EXPECT_EQ(id.node_rank, 1);
  EXPECT_EQ(id.master_addr, "10.0.0.1");
  EXPECT_EQ(id.master_port, 29400);
  EXPECT_TRUE(id.agent_store);
  EXPECT_EQ(id.restart_count, 3);
}

TEST(WorkerEnvTest, SetsEveryTorchrunVariable) {
  const std::vector<std::string> env = workerEnvironment({"HOME=/root", "PATH=/bin"}, sampleIdentity(), 3);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"RANK", "5"},
      {"LOCAL_RANK", "1"},
      {"WORLD_SIZE", "8"},
      {"LOCAL_WORLD_SIZE", "4"},
      {"GROUP_RANK", "1"},
      {"GROUP_WORLD_SIZE", "2"},
      {"ROLE_RANK", "5"},
      {"ROLE_WORLD_SIZE", "8"},
      {"ROLE_NAME", "default"},
      {"MASTER_ADDR", "10.0.0.1"},
      {"MASTER_PORT", "29400"},
      {"TORCHELASTIC_RESTART_COUNT", "3"},
      {"TORCHELASTIC_MAX_RESTARTS", "7"},
      {"TORCHELASTIC_RUN_ID", "job42"},
      {"TORCHELASTIC_USE_AGENT_STORE", "True"},
      {"TORCHELASTIC_ERROR_FILE", "/tmp/x/error.json"},
      {"OMP_NUM_THREADS", "3"},
      {"OMP_WAIT_POLICY", "PASSIVE"},
      {"HOME", "/root"},
      {"PATH", "/bin"},
  };
  for (const auto& [name, value] : expected) {
    EXPECT_EQ(findVariable(env, name), value) << name;
  }
  EXPECT_EQ(env.size(), expected.size());
}

TEST(WorkerEnvTest, ReplacesInheritedRankVariablesButKeepsUserThreadSettings) {
  const std::vector<std::string> base = {
      "RANK=0", "WORLD_SIZE=1", "MASTER_PORT=1", "OMP_NUM_THREADS=6", "OMP_WAIT_POLICY=ACTIVE", "RANKING=keep"};
  const std::vector<std::string> env = workerEnvironment(base, sampleIdentity(), 3);
  EXPECT_EQ(findVariable(env, "RANK"), "5");
  EXPECT_EQ(findVariable(env, "WORLD_SIZE"), "8");
  EXPECT_EQ(findVariable(env, "MASTER_PORT"), "29400");
  EXPECT_EQ(findVariable(env, "OMP_NUM_THREADS"), "6");
  EXPECT_EQ(findVariable(env, "OMP_WAIT_POLICY"), "ACTIVE");
  EXPECT_EQ(findVariable(env, "RANKING"), "keep");
  int rank_entries = 0;
  for (const auto& entry : env) rank_entries += entry.rfind("RANK=", 0) == 0 ? 1 : 0;
  EXPECT_EQ(rank_entries, 1);
}

TEST(WorkerEnvTest, DefaultThreadsShareTheCoresAtLeastOne) {
  EXPECT_EQ(defaultOmpThreads(16, 4), 4);
  EXPECT_EQ(defaultOmpThreads(10, 4), 2);
  EXPECT_EQ(defaultOmpThreads(2, 8), 1);
  EXPECT_EQ(defaultOmpThreads(1, 1), 1);
}

TEST(WorkerEnvTest, FindVariableMatchesWholeNames) {
  const std::vector<std::string> env = {"RANKS=1", "RANK=2", "EMPTY="};
  EXPECT_EQ(findVariable(env, "RANK"), "2");
  EXPECT_EQ(findVariable(env, "EMPTY"), "");
  EXPECT_FALSE(findVariable(env, "RAN").has_value());
}

TEST(WorkerEnvTest, SetVariableReplacesAddsAndRemoves) {
  std::vector<std::string> env = {"LOOM_ELASTIC_ID=7", "LOOM_ELASTIC_IDX=1", "HOME=/root", "LOOM_ELASTIC_ID=8"};
  setVariable(&env, "LOOM_ELASTIC_ID", "3");
  EXPECT_EQ(env, (std::vector<std::string>{"LOOM_ELASTIC_IDX=1", "HOME=/root", "LOOM_ELASTIC_ID=3"}));
  setVariable(&env, "LOOM_ELASTIC_JOIN", "1");
  EXPECT_EQ(findVariable(env, "LOOM_ELASTIC_JOIN"), "1");
  setVariable(&env, "LOOM_ELASTIC_JOIN", std::nullopt);
  setVariable(&env, "NOT_THERE", std::nullopt);
  EXPECT_EQ(env, (std::vector<std::string>{"LOOM_ELASTIC_IDX=1", "HOME=/root", "LOOM_ELASTIC_ID=3"}));
}

}  // namespace
}  // namespace loom::launcher
