// Flag parsing: torchrun's forms, both spellings, PET_* defaults, and messages
// that name the flag and the value.
#include "launcher/launch_options.h"
#include "launcher/launch_cli.h"
#include "runtime/core/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <CLI/CLI.hpp>

#include <cstdlib>

namespace loom::launcher {
namespace {

using ::testing::HasSubstr;

// The message of the InputError `fn` throws (fails the test when it throws none).
template <typename Fn>
std::string inputErrorOf(Fn&& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "expected an InputError";
  return "";
}

LaunchOptions parseCommandLine(std::vector<std::string> args) {
  CLI::App app{"test", "loom-launch"};
  LaunchFlags flags;
  addLaunchFlags(app, &flags);
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector last-first
  app.parse(args);
  return resolveLaunchOptions(flags, app.remaining());
}

// Sets an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

TEST(LaunchOptionsTest, NnodesTakesNOrMinMax) {
  int lo = 0;
  int hi = 0;
  parseNnodes("3", &lo, &hi);
  EXPECT_EQ(lo, 3);
  EXPECT_EQ(hi, 3);
  parseNnodes("2:5", &lo, &hi);
  EXPECT_EQ(lo, 2);
  EXPECT_EQ(hi, 5);
  for (const char* bad : {"0", "3:2", "a", "1:", ":2", "1:2:3", "-1", ""}) {
    EXPECT_THAT(inputErrorOf([&] { parseNnodes(bad, &lo, &hi); }), HasSubstr("--nnodes \"" + std::string(bad) + "\""))
        << bad;
  }
}

TEST(LaunchOptionsTest, NprocPerNodeTakesCountAutoAndCpu) {
  EXPECT_EQ(parseNprocPerNode("4", 16), 4);
  EXPECT_EQ(parseNprocPerNode("auto", 16), 16);
  EXPECT_EQ(parseNprocPerNode("cpu", 7), 7);
  EXPECT_THAT(inputErrorOf([] { parseNprocPerNode("0", 8); }), HasSubstr("--nproc-per-node \"0\""));
  EXPECT_THAT(inputErrorOf([] { parseNprocPerNode("two", 8); }), HasSubstr("\"two\""));
  EXPECT_THAT(inputErrorOf([] { parseNprocPerNode("gpu", 8); }), HasSubstr("accelerators"));
}

TEST(LaunchOptionsTest, EndpointParsesHostPortIpv6AndDefaultPort) {
  EXPECT_EQ(parseEndpoint("node0:1234").host, "node0");
  EXPECT_EQ(parseEndpoint("node0:1234").port, 1234);
  EXPECT_EQ(parseEndpoint("10.1.2.3").port, kDefaultRendezvousPort);
  EXPECT_EQ(parseEndpoint("localhost:0").port, 0);
  const Endpoint v6 = parseEndpoint("[::1]:29500");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 29500);
  EXPECT_EQ(v6.str(), "[::1]:29500");
  EXPECT_THAT(inputErrorOf([] { parseEndpoint("host:99999"); }), HasSubstr("port \"99999\""));
  EXPECT_THAT(inputErrorOf([] { parseEndpoint("host:x"); }), HasSubstr("port \"x\""));
  EXPECT_THAT(inputErrorOf([] { parseEndpoint(":80"); }), HasSubstr("no host"));
  EXPECT_THAT(inputErrorOf([] { parseEndpoint("::1:80"); }), HasSubstr("[ADDRESS]:PORT"));
}

TEST(LaunchOptionsTest, SecondsAcceptDecimalsAndRejectNegatives) {
  EXPECT_EQ(parseSeconds("0.1", "--monitor-interval").count(), 100);
  EXPECT_EQ(parseSeconds("30", "--grace-period").count(), 30000);
  EXPECT_THAT(inputErrorOf([] { parseSeconds("-1", "--grace-period"); }), HasSubstr("--grace-period \"-1\""));
  EXPECT_THAT(inputErrorOf([] { parseSeconds("5s", "--rdzv-timeout"); }), HasSubstr("--rdzv-timeout \"5s\""));
}

TEST(LaunchOptionsTest, RendezvousConfSetsTimeoutsAndRejectsUnknownKeys) {
  LaunchOptions opts;
  applyRendezvousConf("join_timeout=12,last_call_timeout=0.5", &opts);
  EXPECT_EQ(opts.rdzv_timeout.count(), 12000);
  EXPECT_EQ(opts.last_call.count(), 500);
  EXPECT_THAT(inputErrorOf([&] { applyRendezvousConf("read_timeout=3", &opts); }), HasSubstr("\"read_timeout\""));
  EXPECT_THAT(inputErrorOf([&] { applyRendezvousConf("join_timeout", &opts); }), HasSubstr("KEY=VALUE"));
}

TEST(LaunchOptionsTest, DashAndUnderscoreSpellingsAreEquivalent) {
  const LaunchOptions dashed = parseCommandLine({"--nproc-per-node", "3", "--max-restarts", "2", "--", "prog", "x"});
  const LaunchOptions underscored = parseCommandLine({"--nproc_per_node=3", "--max_restarts", "2", "prog", "x"});
  for (const auto* opts : {&dashed, &underscored}) {
    EXPECT_EQ(opts->nproc_per_node, 3);
    EXPECT_EQ(opts->max_restarts, 2);
    EXPECT_EQ(opts->program, "prog");
    EXPECT_EQ(opts->args, std::vector<std::string>{"x"});
  }
}

TEST(LaunchOptionsTest, ArgumentsAfterTheProgramBelongToIt) {
  const LaunchOptions opts = parseCommandLine({"prog", "--nproc-per-node", "9", "--", "--config", "c.pbtxt"});
  EXPECT_EQ(opts.nproc_per_node, 1);
  EXPECT_EQ(opts.args, (std::vector<std::string>{"--nproc-per-node", "9", "--", "--config", "c.pbtxt"}));
  EXPECT_THAT(inputErrorOf([] {
                parseCommandLine({"--nproc-per-nod", "2", "prog"});
              }),
              HasSubstr("unknown option --nproc-per-nod"));
  EXPECT_THAT(inputErrorOf([] { parseCommandLine({"--nproc-per-node", "2"}); }), HasSubstr("no program"));
}

TEST(LaunchOptionsTest, PetEnvironmentGivesDefaultsAndExplicitFlagsWin) {
  const ScopedEnv nproc("PET_NPROC_PER_NODE", "5");
  const ScopedEnv restarts("PET_MAX_RESTARTS", "4");
  const ScopedEnv standalone("PET_STANDALONE", "1");
  const LaunchOptions from_env = parseCommandLine({"prog"});
  EXPECT_EQ(from_env.nproc_per_node, 5);
  EXPECT_EQ(from_env.max_restarts, 4);
  EXPECT_TRUE(from_env.standalone);
  EXPECT_EQ(from_env.run_id.size(), 32u);  // --standalone draws a random run id
  const LaunchOptions explicit_flag = parseCommandLine({"--nproc-per-node", "2", "prog"});
  EXPECT_EQ(explicit_flag.nproc_per_node, 2);
  EXPECT_EQ(explicit_flag.max_restarts, 4);
}

TEST(LaunchOptionsTest, CrossFlagMistakesNameTheFlags) {
  EXPECT_THAT(inputErrorOf([] { parseCommandLine({"--tee", "prog"}); }), HasSubstr("--log-dir"));
  EXPECT_THAT(inputErrorOf([] { parseCommandLine({"--nnodes", "2", "prog"}); }), HasSubstr("--rdzv-endpoint"));
  EXPECT_THAT(inputErrorOf([] {
                parseCommandLine({"--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1", "prog"});
              }),
              HasSubstr("--node-rank 2 must be in [0, 2)"));
  EXPECT_THAT(inputErrorOf([] {
                parseCommandLine({"--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "h:0", "prog"});
              }),
              HasSubstr("port 0 only works on node 0"));
  EXPECT_THAT(inputErrorOf([] {
                parseCommandLine({"--standalone", "--nnodes", "1:2", "prog"});
              }),
              HasSubstr("--standalone"));
  EXPECT_THAT(inputErrorOf([] { parseCommandLine({"--rdzv-id", "a/b", "prog"}); }), HasSubstr("--rdzv-id \"a/b\""));
  EXPECT_THAT(inputErrorOf([] {
                parseCommandLine({"--log-dir", "d", "--tee", "3", "prog"});
              }),
              HasSubstr("--tee is a switch"));
}

TEST(LaunchOptionsTest, DescriptionListsTheResolvedConfig) {
  const LaunchOptions opts = parseCommandLine({"--nnodes", "1:3", "--rdzv-endpoint", "node0:29400", "--rdzv-id", "job7",
                                               "--log-dir", "/tmp/logs", "--tee", "prog", "--config", "x"});
  const std::string text = describeLaunchOptions(opts);
  EXPECT_THAT(text, HasSubstr("Starting loom-launch with launch configs:"));
  EXPECT_THAT(text, HasSubstr("entrypoint       : prog --config x"));
  EXPECT_THAT(text, HasSubstr("min_nodes        : 1"));
  EXPECT_THAT(text, HasSubstr("max_nodes        : 3"));
  EXPECT_THAT(text, HasSubstr("run_id           : job7"));
  EXPECT_THAT(text, HasSubstr("rdzv_endpoint    : node0:29400"));
  EXPECT_THAT(text, HasSubstr("log_dir          : /tmp/logs"));
  EXPECT_THAT(text, HasSubstr("tee              : on"));
}

}  // namespace
}  // namespace loom::launcher
