#include "runtime/dist/identity.h"
#include "runtime/core/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace loom::dist {
namespace {

using Env = std::map<std::string, std::string>;
using ::testing::HasSubstr;

RankIdentity parse(const Env& env) {
  return identityFromEnvironment([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

std::string inputErrorOf(const Env& env) {
  try {
    parse(env);
  } catch (const InputError& e) {
    return errorMessage(e);
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

const Env kTorchrun = {{"RANK", "5"},
                       {"WORLD_SIZE", "8"},
                       {"LOCAL_RANK", "1"},
                       {"LOCAL_WORLD_SIZE", "4"},
                       {"GROUP_RANK", "1"},
                       {"MASTER_ADDR", "10.0.0.7"},
                       {"MASTER_PORT", "29500"},
                       {"TORCHELASTIC_RESTART_COUNT", "2"},
                       {"TORCHELASTIC_USE_AGENT_STORE", "True"}};
const Env kOpenMpi = {{"OMPI_COMM_WORLD_RANK", "3"},
                      {"OMPI_COMM_WORLD_SIZE", "4"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                      {"OMPI_COMM_WORLD_NODE_RANK", "1"}};
const Env kSlurm = {{"SLURM_PROCID", "6"},
                    {"SLURM_NTASKS", "8"},
                    {"SLURM_LOCALID", "2"},
                    {"SLURM_NTASKS_PER_NODE", "4"},
                    {"SLURM_NODEID", "1"}};

Env merged(Env a, const Env& b) {
  a.insert(b.begin(), b.end());
  return a;
}

TEST(IdentityTest, NoLauncherMeansOneProcess) {
  const RankIdentity id = parse({});
  EXPECT_EQ(id.source, "single process");
  EXPECT_EQ(id.rank, 0);
  EXPECT_EQ(id.world_size, 1);
  EXPECT_EQ(id.local_rank, 0);
  EXPECT_EQ(id.local_world_size, 1);
  EXPECT_EQ(id.node_rank, 0);
  EXPECT_EQ(id.master_port, -1);
  EXPECT_TRUE(id.master_addr.empty());
  EXPECT_FALSE(id.agent_store);
  EXPECT_EQ(id.describe(), "rank 0 of 1 (local 0 of 1, node 0) from single process, store not set, restart 0");
}

TEST(IdentityTest, TorchrunVariablesGiveEveryField) {
  const RankIdentity id = parse(kTorchrun);
  EXPECT_EQ(id.source, "torchrun");
  EXPECT_EQ(id.rank, 5);
  EXPECT_EQ(id.world_size, 8);
  EXPECT_EQ(id.local_rank, 1);
  EXPECT_EQ(id.local_world_size, 4);
  EXPECT_EQ(id.node_rank, 1);
  EXPECT_EQ(id.master_addr, "10.0.0.7");
  EXPECT_EQ(id.master_port, 29500);
  EXPECT_TRUE(id.agent_store);
  EXPECT_EQ(id.restart_count, 2);
  EXPECT_EQ(id.describe(),
            "rank 5 of 8 (local 1 of 4, node 1) from torchrun, store 10.0.0.7:29500 (launcher's), restart 2");
}

TEST(IdentityTest, TorchrunWinsOverMpirunWhichWinsOverPmiAndSlurm) {
  EXPECT_EQ(parse(merged(merged(kTorchrun, kOpenMpi), kSlurm)).rank, 5);
  const Env pmi = {{"PMI_RANK", "2"}, {"PMI_SIZE", "3"}};
  const RankIdentity ompi = parse(merged(merged(kOpenMpi, pmi), kSlurm));
  EXPECT_EQ(ompi.source, "mpirun");
  EXPECT_EQ(ompi.rank, 3);
  EXPECT_EQ(ompi.local_rank, 1);
  EXPECT_EQ(ompi.local_world_size, 2);
  EXPECT_EQ(ompi.node_rank, 1);
  const RankIdentity mpich = parse(merged(pmi, kSlurm));
  EXPECT_EQ(mpich.source, "mpirun");
  EXPECT_EQ(mpich.rank, 2);
  EXPECT_EQ(mpich.world_size, 3);
}

TEST(IdentityTest, SlurmVariablesWithTheStoreFromTheEnvironment) {
  const RankIdentity id = parse(merged(kSlurm, {{"MASTER_ADDR", "node01"}, {"MASTER_PORT", "12345"}}));
  EXPECT_EQ(id.source, "slurm");
  EXPECT_EQ(id.rank, 6);
  EXPECT_EQ(id.world_size, 8);
  EXPECT_EQ(id.local_rank, 2);
  EXPECT_EQ(id.local_world_size, 4);
  EXPECT_EQ(id.node_rank, 1);
  EXPECT_EQ(id.master_addr, "node01");
  EXPECT_EQ(id.master_port, 12345);
  EXPECT_FALSE(id.agent_store);
}

TEST(IdentityTest, MissingLocalVariablesMeanOneNodeOrUnknown) {
  const RankIdentity one_node = parse({{"RANK", "2"}, {"WORLD_SIZE", "3"}});
  EXPECT_EQ(one_node.local_rank, 2);
  EXPECT_EQ(one_node.local_world_size, 3);
  EXPECT_EQ(one_node.node_rank, 0);
  const RankIdentity unknown = parse({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(unknown.local_rank, 1);
  EXPECT_EQ(unknown.local_world_size, -1);
  EXPECT_EQ(unknown.node_rank, -1);
  EXPECT_THAT(unknown.describe(), HasSubstr("(local 1 of ?, node ?)"));
}

TEST(IdentityTest, MalformedValuesNameTheVariableAndValue) {
  EXPECT_THAT(inputErrorOf({{"RANK", "abc"}, {"WORLD_SIZE", "4"}}), HasSubstr("RANK=abc (set by torchrun)"));
  EXPECT_THAT(inputErrorOf({{"RANK", "1"}, {"WORLD_SIZE", "4x"}}), HasSubstr("WORLD_SIZE=4x"));
  EXPECT_THAT(inputErrorOf({{"RANK", ""}, {"WORLD_SIZE", "4"}}), HasSubstr("RANK= "));
  EXPECT_THAT(inputErrorOf({{"RANK", " 1"}, {"WORLD_SIZE", "4"}}), HasSubstr("RANK= 1"));
  EXPECT_THAT(inputErrorOf({{"OMPI_COMM_WORLD_RANK", "99999999999"}, {"OMPI_COMM_WORLD_SIZE", "4"}}),
              HasSubstr("OMPI_COMM_WORLD_RANK=99999999999 (set by mpirun) is not an integer"));
  EXPECT_THAT(inputErrorOf({{"MASTER_PORT", "70000"}}), HasSubstr("MASTER_PORT=70000"));
  EXPECT_THAT(inputErrorOf({{"MASTER_PORT", "port"}}), HasSubstr("MASTER_PORT=port"));
  EXPECT_THAT(inputErrorOf({{"TORCHELASTIC_USE_AGENT_STORE", "maybe"}}),
              HasSubstr("TORCHELASTIC_USE_AGENT_STORE=maybe"));
  EXPECT_THAT(inputErrorOf({{"TORCHELASTIC_RESTART_COUNT", "-1"}}), HasSubstr("TORCHELASTIC_RESTART_COUNT=-1"));
}

TEST(IdentityTest, InconsistentValuesNameBothVariables) {
  EXPECT_THAT(inputErrorOf({{"RANK", "5"}, {"WORLD_SIZE", "4"}}), HasSubstr("RANK=5 is outside WORLD_SIZE=4"));
  EXPECT_THAT(inputErrorOf({{"RANK", "-1"}, {"WORLD_SIZE", "4"}}), HasSubstr("RANK=-1 is outside WORLD_SIZE=4"));
  EXPECT_THAT(inputErrorOf({{"RANK", "0"}, {"WORLD_SIZE", "0"}}), HasSubstr("WORLD_SIZE=0"));
  EXPECT_THAT(inputErrorOf({{"RANK", "1"}}), HasSubstr("WORLD_SIZE is not set although RANK=1 is"));
  EXPECT_THAT(inputErrorOf({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}}),
              HasSubstr("LOCAL_RANK=2 is outside LOCAL_WORLD_SIZE=2"));
  EXPECT_THAT(inputErrorOf({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "8"}}),
              HasSubstr("LOCAL_WORLD_SIZE=8 must be between 1 and WORLD_SIZE=4"));
  EXPECT_THAT(
      inputErrorOf({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "9"}}),
      HasSubstr("SLURM_NODEID=9"));
}

}  // namespace
}  // namespace loom::dist
