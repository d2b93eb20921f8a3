// Two launchers forming one job: on loopback, and in two network namespaces
// joined by a veth pair (as two machines would be). The workers are shell
// scripts, plus Python workers that exchange values through the launcher-hosted
// store to show that MASTER_ADDR/MASTER_PORT work from every node.
#include "tests/launcher/launcher_test_util.h"
#include "tests/support/test_util.h"

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <csignal>
#include <filesystem>

namespace loom::launcher::test {
namespace {

using loom::test::readTextFile;
using loom::test::runCommand;
using loom::test::shellQuote;
using ::testing::HasSubstr;

const char* kRecordEnv =
    "env | grep -E '^(RANK|LOCAL_RANK|WORLD_SIZE|LOCAL_WORLD_SIZE|GROUP_RANK|GROUP_WORLD_SIZE|MASTER_ADDR|"
    "MASTER_PORT)=' | sort > \"$DIR/env_$RANK\"\n";

// Each rank publishes a value in the launcher-hosted store and reads everyone's. A
// PyTorch 2.x built without libuv (Debian's) refuses its default store backend.
const char* kStoreExchange = R"(import datetime, os, sys
import torch.distributed as dist
def connect(**backend):
    return dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=datetime.timedelta(seconds=60), **backend)
try:
    store = connect()
except RuntimeError as e:
    if "libuv" not in str(e):
        raise
    store = connect(use_libuv=False)
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
store.set("exchange/%d" % rank, "from %d" % rank)
store.wait(["exchange/%d" % r for r in range(world)])
with open(os.path.join(os.environ["DIR"], "store_%d" % rank), "w") as out:
    out.write(",".join(store.get("exchange/%d" % r).decode() for r in range(world)))
)";

class MultiNodeTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_.file(name); }

  /// loom-launch for node `node_rank` of a 2 x 2 job with `script_body` as the worker.
  std::string node(int node_rank, const std::string& endpoint, const std::string& extra_flags,
                   const std::string& script_body) const {
    const std::string script = file("worker.sh");
    if (!std::filesystem::exists(script)) writeScript(script, script_body);
    return "env DIR=" + shellQuote(dir_.path()) + " TMPDIR=" + shellQuote(dir_.path()) + " " + launcherBinary() +
           " --nnodes 2 --nproc-per-node 2 --monitor-interval 0.05 --rdzv-timeout 60 --node-rank " +
           std::to_string(node_rank) + " --rdzv-endpoint " + endpoint + " " + extra_flags + " -- " + script;
  }

  void expectEnvironments(const std::string& master_addr, int port) const {
    for (int rank = 0; rank < 4; ++rank) {
      const std::string env = readTextFile(file("env_" + std::to_string(rank)));
      const std::string expected =
          "GROUP_RANK=" + std::to_string(rank / 2) + "\nGROUP_WORLD_SIZE=2\nLOCAL_RANK=" + std::to_string(rank % 2) +
          "\nLOCAL_WORLD_SIZE=2\nMASTER_ADDR=" + master_addr + "\nMASTER_PORT=" + std::to_string(port) +
          "\nRANK=" + std::to_string(rank) + "\nWORLD_SIZE=4\n";
      EXPECT_EQ(env, expected) << "rank " << rank;
    }
  }

  void expectStoreExchange() const {
    for (int rank = 0; rank < 4; ++rank) {
      EXPECT_EQ(readTextFile(file("store_" + std::to_string(rank))), "from 0,from 1,from 2,from 3") << rank;
    }
  }

  loom::test::TempDir dir_;
};

TEST_F(MultiNodeTest, TwoLaunchersOnLoopbackFormOneJob) {
  loom::test::writeTextFile(file("exchange.py"), kStoreExchange);
  const std::string body = std::string(kRecordEnv) + "exec /usr/bin/python3 \"$DIR/exchange.py\"\n";
  BackgroundProcess node0(node(0, "127.0.0.1:0", "", body), file("node0.log"));
  const int port = waitForStorePort(file("node0.log"));
  BackgroundProcess node1(node(1, "127.0.0.1:" + std::to_string(port), "", body), file("node1.log"));
  EXPECT_EQ(node1.wait(), 0) << readTextFile(file("node1.log"));
  EXPECT_EQ(node0.wait(), 0) << readTextFile(file("node0.log"));
  expectEnvironments("127.0.0.1", port);
  expectStoreExchange();
  EXPECT_THAT(readTextFile(file("node1.log")), HasSubstr("this node is group rank 1, world size 4"));
}

TEST_F(MultiNodeTest, FailureOnOneNodeStopsBothWithTheSameRootCause) {
  const std::string body =
      "trap 'echo term > \"$DIR/term_$RANK\"; exit 0' TERM\n"
      "touch \"$DIR/ready_$RANK\"\n"
      "if [ \"$RANK\" = 3 ]; then\n"
      "  for r in 0 1 2; do while [ ! -e \"$DIR/ready_$r\" ]; do sleep 0.01; done; done\n"
      "  echo 'rank 3 gives up' >&2; exit 7\n"
      "fi\n"
      "while :; do sleep 0.05; done\n";
  BackgroundProcess node0(node(0, "127.0.0.1:0", "", body), file("node0.log"));
  const int port = waitForStorePort(file("node0.log"));
  BackgroundProcess node1(node(1, "127.0.0.1:" + std::to_string(port), "", body), file("node1.log"));
  EXPECT_EQ(node1.wait(), 7) << readTextFile(file("node1.log"));
  EXPECT_EQ(node0.wait(), 7) << readTextFile(file("node0.log"));
  for (const std::string log : {"node0.log", "node1.log"}) {
    const std::string text = readTextFile(file(log));
    const size_t root = text.find("Root Cause (first observed failure):");
    ASSERT_NE(root, std::string::npos) << text;
    EXPECT_THAT(text.substr(root), HasSubstr("  rank      : 3 (local_rank: 1)\n")) << log;
    EXPECT_THAT(text.substr(root), HasSubstr("  exitcode  : 7 (pid: ")) << log;
    EXPECT_THAT(text.substr(root), HasSubstr("    | rank 3 gives up\n")) << log;
  }
  EXPECT_THAT(readTextFile(file("node0.log")), HasSubstr("node 1 ("));
  for (const std::string rank : {"0", "1", "2"}) EXPECT_TRUE(std::filesystem::exists(file("term_" + rank))) << rank;
}

TEST_F(MultiNodeTest, RestartsAreCoordinatedAcrossNodes) {
  const std::string body =
      "echo \"$TORCHELASTIC_RESTART_COUNT\" >> \"$DIR/attempts_$RANK\"\n"
      "if [ \"$TORCHELASTIC_RESTART_COUNT\" = 0 ]; then\n"
      "  trap 'exit 0' TERM\n"
      "  touch \"$DIR/ready_$RANK\"\n"
      "  if [ \"$RANK\" = 2 ]; then\n"
      "    for r in 0 1 3; do while [ ! -e \"$DIR/ready_$r\" ]; do sleep 0.01; done; done\n"
      "    exit 1\n"
      "  fi\n"
      "  while :; do sleep 0.05; done\n"
      "fi\n";
  BackgroundProcess node0(node(0, "127.0.0.1:0", "--max-restarts 1", body), file("node0.log"));
  const int port = waitForStorePort(file("node0.log"));
  BackgroundProcess node1(node(1, "127.0.0.1:" + std::to_string(port), "--max-restarts 1", body), file("node1.log"));
  EXPECT_EQ(node1.wait(), 0) << readTextFile(file("node1.log"));
  EXPECT_EQ(node0.wait(), 0) << readTextFile(file("node0.log"));
  for (int rank = 0; rank < 4; ++rank) {
    EXPECT_EQ(readTextFile(file("attempts_" + std::to_string(rank))), "0\n1\n") << rank;
  }
  EXPECT_THAT(readTextFile(file("node0.log")), HasSubstr("Worker group FAILED. 1/1 attempts left"));
  EXPECT_THAT(readTextFile(file("node1.log")), HasSubstr("Worker group FAILED. 1/1 attempts left"));
}

// Two network namespaces joined by a veth pair, created for the test and
// removed on every path out (the destructor runs on assertion failures too).
class NamespacePair {
 public:
  NamespacePair()
      : a_("loomA" + std::to_string(::getpid())),
        b_("loomB" + std::to_string(::getpid())),
        veth_a_("lva" + std::to_string(::getpid())),
        veth_b_("lvb" + std::to_string(::getpid())) {
    remove();
    const std::string setup = "ip netns add " + a_ + " && ip netns add " + b_ + " && ip link add " + veth_a_ +
                              " netns " + a_ + " type veth peer name " + veth_b_ + " netns " + b_ + " && ip -n " + a_ +
                              " addr add " + kAddressA + "/24 dev " + veth_a_ + " && ip -n " + b_ + " addr add " +
                              kAddressB + "/24 dev " + veth_b_ + " && ip -n " + a_ + " link set " + veth_a_ +
                              " up && ip -n " + b_ + " link set " + veth_b_ + " up && ip -n " + a_ +
                              " link set lo up && ip -n " + b_ + " link set lo up";
    const auto result = runCommand(setup);
    setup_output_ = result.output;
    ok_ = result.exit_code == 0;
  }
  ~NamespacePair() { remove(); }
  NamespacePair(const NamespacePair&) = delete;
  NamespacePair& operator=(const NamespacePair&) = delete;

  bool ok() const { return ok_; }
  const std::string& setupOutput() const { return setup_output_; }
  std::string inA(const std::string& command) const { return "ip netns exec " + a_ + " " + command; }
  std::string inB(const std::string& command) const { return "ip netns exec " + b_ + " " + command; }

  static constexpr const char* kAddressA = "10.213.7.1";
  static constexpr const char* kAddressB = "10.213.7.2";

 private:
  void remove() const { runCommand("ip netns del " + a_ + " 2>/dev/null; ip netns del " + b_ + " 2>/dev/null"); }

  std::string a_, b_, veth_a_, veth_b_;
  std::string setup_output_;
  bool ok_ = false;
};

TEST_F(MultiNodeTest, LaunchersInTwoNetworkNamespacesFormOneJob) {
  ASSERT_EQ(::geteuid(), 0u) << "creating network namespaces needs root (the test machine and CI run as root)";
  const NamespacePair net;
  ASSERT_TRUE(net.ok()) << net.setupOutput();
  loom::test::writeTextFile(file("exchange.py"), kStoreExchange);
  const std::string body = std::string(kRecordEnv) + "exec /usr/bin/python3 \"$DIR/exchange.py\"\n";
  const std::string host = NamespacePair::kAddressA;
  BackgroundProcess node0(net.inA(node(0, host + ":0", "", body)), file("node0.log"));
  const int port = waitForStorePort(file("node0.log"));
  BackgroundProcess node1(net.inB(node(1, host + ":" + std::to_string(port), "", body)), file("node1.log"));
  EXPECT_EQ(node1.wait(), 0) << readTextFile(file("node1.log"));
  EXPECT_EQ(node0.wait(), 0) << readTextFile(file("node0.log"));
  expectEnvironments(host, port);
  expectStoreExchange();
  // Node 1 cannot reach node 0 through loopback: the job really crossed the veth link.
  const auto loopback = runCommand(net.inB(launcherBinary() +
                                           " --nnodes 2 --node-rank 1 --rdzv-timeout 1 "
                                           "--rdzv-endpoint 127.0.0.1:" +
                                           std::to_string(port) + " -- true"));
  EXPECT_EQ(loopback.exit_code, 2) << loopback.output;
}

}  // namespace
}  // namespace loom::launcher::test
