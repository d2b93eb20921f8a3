// Real processes: three loom_dist_worker ranks started with torchrun's variables.
#include "runtime/dist/rendezvous.h"
#include "tests/runtime/dist/port_probe.h"
#include "tests/support/test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace loom::test {
namespace {

using ::testing::HasSubstr;

// Starts ranks [0, started) of a world of `world_size` in the background, each
// logging to <dir>/rank<r>.log, waits for all and prints "rank r exit c" lines.
CommandResult startRanks(const TempDir& dir, int world_size, int started, int port, const std::string& args,
                         const std::string& env = "") {
  std::string script;
  for (int r = 0; r < started; ++r) {
    script += env + " RANK=" + std::to_string(r) + " WORLD_SIZE=" + std::to_string(world_size) +
              " LOCAL_RANK=" + std::to_string(r) + " LOCAL_WORLD_SIZE=" + std::to_string(world_size) +
              " GROUP_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " " +
              shellQuote(loomBinary("loom_dist_worker")) + " " + args + " > " +
              shellQuote(dir.file("rank" + std::to_string(r) + ".log")) + " 2>&1 & pid" + std::to_string(r) + "=$!\n";
  }
  for (int r = 0; r < started; ++r) {
    script += "wait $pid" + std::to_string(r) + "; echo \"rank " + std::to_string(r) + " exit $?\"\n";
  }
  return runCommand(script);
}

TEST(GlooMultiProcessTest, ThreeProcessesRendezvousAndAllReduce) {
  TempDir dir;
  const CommandResult result = startRanks(dir, 3, 3, unusedTcpPort(), "--timeout-ms 30000");
  for (int r = 0; r < 3; ++r) {
    const std::string log = readTextFile(dir.file("rank" + std::to_string(r) + ".log"));
    EXPECT_THAT(result.output, HasSubstr("rank " + std::to_string(r) + " exit 0")) << log;
    EXPECT_THAT(log, HasSubstr("rank " + std::to_string(r) + " of 3 (local " + std::to_string(r) +
                               " of 3, node 0) from torchrun"));
    EXPECT_THAT(log, HasSubstr("rank " + std::to_string(r) + " of 3: allReduce ok (sum 6)"));
  }
}

TEST(GlooMultiProcessTest, AMissingRankExitsWithThePeerLostCodeAndIsNamed) {
  // This test hosts the store, as loom-launch does, so the ranks' timeout only
  // measures the wait for the missing one.
  auto store = dist::hostStore("127.0.0.1", 0, 3, std::chrono::seconds(30));
  TempDir dir;
  const CommandResult result =
      startRanks(dir, 3, 2, store->getPort(), "--timeout-ms 1500", "TORCHELASTIC_USE_AGENT_STORE=True");
  for (int r = 0; r < 2; ++r) {
    const std::string log = readTextFile(dir.file("rank" + std::to_string(r) + ".log"));
    EXPECT_THAT(result.output, HasSubstr("rank " + std::to_string(r) + " exit 3")) << log;
    EXPECT_THAT(log, HasSubstr("ranks 2 did not arrive within 1500 ms"));
  }
}

}  // namespace
}  // namespace loom::test
