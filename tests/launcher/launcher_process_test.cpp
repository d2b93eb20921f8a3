// loom-launch as a real process on one node, with small shell scripts as
// workers: the worker environment, output prefixes, the failure summary, the
// restart policy, signals, and the messages for unusable endpoints.
#include "tests/launcher/launcher_test_util.h"
#include "tests/support/test_util.h"

#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <thread>

namespace loom::launcher::test {
namespace {

using loom::test::readTextFile;
using loom::test::runCommand;
using loom::test::shellQuote;
using ::testing::HasSubstr;
using ::testing::Not;

// A worker body that announces it is ready (so tests never race its trap) and
// then waits to be told to stop: on SIGTERM it records that and exits 0.
const std::string kWaitForTerm =
    "trap 'echo term > \"$DIR/term_$RANK\"; exit 0' TERM\n"
    "touch \"$DIR/ready_$RANK\"\n"
    "while :; do sleep 0.05; done\n";

// Waits (in the worker) until ranks 0..N-1 other than itself are ready.
std::string awaitReady(int world) {
  return "for r in $(seq 0 " + std::to_string(world - 1) +
         "); do [ \"$r\" = \"$RANK\" ] || while [ ! -e \"$DIR/ready_$r\" ]; do sleep 0.01; done; done\n";
}

class LauncherProcessTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_.file(name); }

  /// A shell command running loom-launch `flags` with `script_body` (written to
  /// the temp dir) as the worker; DIR tells the worker where to leave its files, and
  /// TMPDIR keeps the launcher's error-file directory inside the test's (a killed
  /// launcher cannot remove it).
  std::string launch(const std::string& flags, const std::string& script_body) const {
    writeScript(file("worker.sh"), script_body);
    return "env DIR=" + shellQuote(dir_.path()) + " TMPDIR=" + shellQuote(dir_.path()) + " " + launcherBinary() +
           " --monitor-interval 0.05 " + flags + " -- " + file("worker.sh");
  }

  bool exists(const std::string& name) const { return std::filesystem::exists(file(name)); }

  /// Waits until every file in `names` exists; false, instead of a hang, when
  /// the launcher exits first or after kPatience.
  bool awaitFiles(BackgroundProcess& launcher, std::initializer_list<const char*> names) const {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < deadline) {
      if (std::all_of(names.begin(), names.end(), [&](const char* name) { return exists(name); })) return true;
      if (launcher.wait(std::chrono::milliseconds(0)).has_value()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  loom::test::TempDir dir_;
};

bool hasLine(const std::string& text, const std::string& line) {
  return text.rfind(line + "\n", 0) == 0 || text.find("\n" + line + "\n") != std::string::npos;
}

int storePortIn(const std::string& output) {
  const std::string listening = "rendezvous store listening on 127.0.0.1:";
  const size_t at = output.find(listening);
  return at == std::string::npos ? -1 : std::stoi(output.substr(at + listening.size()));
}

int usableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
  return CPU_COUNT(&set);
}

TEST_F(LauncherProcessTest, WorkersGetTorchrunVariables) {
  const auto result = runCommand(
      "env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY " +
      launch("--nproc-per-node 3 --rdzv-id job9 --max-restarts 2",
             "env | grep -E '^(RANK|LOCAL_RANK|WORLD_SIZE|LOCAL_WORLD_SIZE|GROUP_RANK|GROUP_WORLD_SIZE|MASTER_ADDR|"
             "MASTER_PORT|TORCHELASTIC_[A-Z_]*|OMP_NUM_THREADS|OMP_WAIT_POLICY)=' | sort > \"$DIR/env_$RANK\"\n"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("Starting loom-launch with launch configs:"));
  EXPECT_THAT(result.output, HasSubstr("OMP_NUM_THREADS is unset"));
  const int store_port = storePortIn(result.output);
  ASSERT_GT(store_port, 0) << result.output;
  const std::string omp = std::to_string(std::max(1, usableCpus() / 3));
  for (int rank = 0; rank < 3; ++rank) {
    const std::string env = readTextFile(file("env_" + std::to_string(rank)));
    const std::string r = std::to_string(rank);
    for (const std::string& line :
         {"RANK=" + r, "LOCAL_RANK=" + r, std::string("WORLD_SIZE=3"), std::string("LOCAL_WORLD_SIZE=3"),
          std::string("GROUP_RANK=0"), std::string("GROUP_WORLD_SIZE=1"), std::string("MASTER_ADDR=127.0.0.1"),
          "MASTER_PORT=" + std::to_string(store_port), std::string("TORCHELASTIC_RESTART_COUNT=0"),
          std::string("TORCHELASTIC_MAX_RESTARTS=2"), std::string("TORCHELASTIC_RUN_ID=job9"),
          std::string("TORCHELASTIC_USE_AGENT_STORE=True"), "OMP_NUM_THREADS=" + omp,
          std::string("OMP_WAIT_POLICY=PASSIVE")}) {
      EXPECT_TRUE(hasLine(env, line)) << "rank " << rank << " lacks " << line << " in:\n" << env;
    }
    EXPECT_THAT(env, HasSubstr("/attempt_0/rank_" + r + "/error.json\n"));
  }
}

TEST_F(LauncherProcessTest, UserThreadSettingsPassThrough) {
  const auto result = runCommand("env OMP_NUM_THREADS=7 OMP_WAIT_POLICY=ACTIVE " +
                                 launch("--nproc-per-node 2", "echo \"omp $OMP_NUM_THREADS $OMP_WAIT_POLICY\"\n"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(countLines(result.output, "omp 7 ACTIVE"), 2) << result.output;
  EXPECT_THAT(result.output, Not(HasSubstr("OMP_NUM_THREADS is unset")));
}

TEST_F(LauncherProcessTest, LinesArePrefixedWithTheRankAndStreamsStayApart) {
  const auto result =
      runCommand(launch("--nproc-per-node 2", "echo \"out of $RANK\"; echo \"err of $RANK\" >&2; printf tail\n") +
                 " >" + file("stdout") + " 2>" + file("stderr"));
  ASSERT_EQ(result.exit_code, 0) << readTextFile(file("stderr"));
  const std::string out = readTextFile(file("stdout"));
  const std::string err = readTextFile(file("stderr"));
  for (const std::string r : {"0", "1"}) {
    EXPECT_TRUE(hasLine(out, "[rank " + r + "]: out of " + r)) << out;
    EXPECT_TRUE(hasLine(out, "[rank " + r + "]: tail")) << out;  // a last line without newline
    EXPECT_TRUE(hasLine(err, "[rank " + r + "]: err of " + r)) << err;
  }
  EXPECT_THAT(out, Not(HasSubstr("err of")));
  EXPECT_THAT(err, Not(HasSubstr("out of")));
  EXPECT_THAT(err, HasSubstr("loom-launch: attempt 0: all 2 workers finished successfully"));
}

TEST_F(LauncherProcessTest, KilledWorkerYieldsTheSummaryAndTheOthersAreStopped) {
  const auto result =
      runCommand(launch("--nproc-per-node 3", "if [ \"$RANK\" = 1 ]; then\n" + awaitReady(3) +
                                                  "  echo 'allocating a lot' >&2\n  kill -9 $$\nfi\n" + kWaitForTerm));
  EXPECT_EQ(result.exit_code, 128 + SIGKILL) << result.output;
  EXPECT_THAT(result.output, HasSubstr("worker.sh FAILED"));
  EXPECT_THAT(result.output, HasSubstr("Failures:\n  <NO_OTHER_FAILURES>"));
  const size_t root = result.output.find("Root Cause (first observed failure):\n[0]:\n");
  ASSERT_NE(root, std::string::npos) << result.output;
  const std::string cause = result.output.substr(root);
  EXPECT_THAT(cause, HasSubstr("  rank      : 1 (local_rank: 1)\n"));
  EXPECT_THAT(cause, HasSubstr("  exitcode  : -9 (pid: "));
  EXPECT_THAT(cause, HasSubstr("Signal 9 (SIGKILL) received by PID"));
  EXPECT_THAT(cause, HasSubstr("SIGKILL is often the OOM killer (check dmesg"));
  EXPECT_THAT(cause, HasSubstr("    | allocating a lot\n"));
  EXPECT_EQ(countLines(result.output, "closing signal SIGTERM"), 2) << result.output;
  EXPECT_TRUE(exists("term_0"));
  EXPECT_TRUE(exists("term_2"));
}

TEST_F(LauncherProcessTest, FailedWorkerIsRestartedAndTheNextAttemptResumes) {
  // Attempt 0: rank 1 "checkpoints" step 5 and crashes; attempt 1 resumes from it.
  const auto result =
      runCommand(launch("--nproc-per-node 2 --max-restarts 1",
                        "echo \"$TORCHELASTIC_RESTART_COUNT\" >> \"$DIR/attempts_$RANK\"\n"
                        "if [ \"$TORCHELASTIC_RESTART_COUNT\" = 0 ]; then\n"
                        "  if [ \"$RANK\" = 1 ]; then " +
                            awaitReady(2) + "    echo 5 > \"$DIR/checkpoint\"; exit 1\n  fi\n" + kWaitForTerm +
                            "fi\n"
                            "echo \"rank $RANK resumed from step $(cat \"$DIR/checkpoint\")\"\n"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("Worker group FAILED. 1/1 attempts left; will restart worker group"));
  EXPECT_THAT(result.output, HasSubstr("[rank 0]: rank 0 resumed from step 5"));
  EXPECT_THAT(result.output, HasSubstr("[rank 1]: rank 1 resumed from step 5"));
  EXPECT_EQ(readTextFile(file("attempts_0")), "0\n1\n");
  EXPECT_EQ(readTextFile(file("attempts_1")), "0\n1\n");
  EXPECT_THAT(result.output, Not(HasSubstr("FAILED\n")));  // no summary for a recovered failure
}

TEST_F(LauncherProcessTest, GivesUpAfterMaxRestartsWithTheRootCausesExitCode) {
  const auto result = runCommand(launch("--nproc-per-node 2 --max-restarts 2",
                                        "echo x >> \"$DIR/attempts_$RANK\"\n"
                                        "[ \"$RANK\" = 0 ] && exit 3\n" +
                                            kWaitForTerm));
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_EQ(readTextFile(file("attempts_0")), "x\nx\nx\n");
  EXPECT_THAT(result.output, HasSubstr("2/2 attempts left"));
  EXPECT_THAT(result.output, HasSubstr("1/2 attempts left"));
  EXPECT_THAT(result.output, HasSubstr("0/2 attempts left: giving up"));
  EXPECT_THAT(result.output, HasSubstr("  exitcode  : 3 (pid: "));
  EXPECT_THAT(result.output, HasSubstr("a peer was lost"));
}

TEST_F(LauncherProcessTest, BadInputExitIsNeverRestarted) {
  const auto result = runCommand(launch("--nproc-per-node 2 --max-restarts 3",
                                        "echo x >> \"$DIR/attempts_$RANK\"\n"
                                        "if [ \"$RANK\" = 1 ]; then echo 'config.pbtxt:3:7: unknown field' >&2; "
                                        "exit 2; fi\n" +
                                            kWaitForTerm));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_EQ(readTextFile(file("attempts_1")), "x\n");
  EXPECT_THAT(result.output, HasSubstr("rank 1 exited with code 2 (bad config or input): not restarting"));
  EXPECT_THAT(result.output, HasSubstr("    | config.pbtxt:3:7: unknown field\n"));
  EXPECT_THAT(result.output, Not(HasSubstr("will restart")));
}

TEST_F(LauncherProcessTest, ErrorFileWrittenByTheWorkerAppearsInTheSummary) {
  const auto result =
      runCommand(launch("--nproc-per-node 1",
                        "printf '{\"message\": {\"message\": \"ValueError: shard 3 is truncated\", \"extraInfo\": "
                        "{\"py_callstack\": \"train.py:12\", \"timestamp\": \"0\"}}}' > \"$TORCHELASTIC_ERROR_FILE\"\n"
                        "exit 1\n"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_THAT(result.output, HasSubstr("/attempt_0/rank_0/error.json\n"));
  EXPECT_THAT(result.output, HasSubstr("  message   : ValueError: shard 3 is truncated\n"));
  EXPECT_THAT(result.output, HasSubstr("  traceback :\n    train.py:12\n"));
}

TEST_F(LauncherProcessTest, SigtermToTheLauncherReachesTheWorkers) {
  BackgroundProcess launcher(launch("--nproc-per-node 2", kWaitForTerm), file("log"));
  ASSERT_TRUE(waitForText(file("log"), "started 2 worker(s)"));
  ASSERT_TRUE(awaitFiles(launcher, {"ready_0", "ready_1"})) << readTextFile(file("log"));
  launcher.signal(SIGTERM);
  const auto code = launcher.wait();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << readTextFile(file("log"));  // every worker checkpointed and exited 0
  EXPECT_TRUE(exists("term_0"));
  EXPECT_TRUE(exists("term_1"));
  EXPECT_THAT(readTextFile(file("log")), HasSubstr("Received SIGTERM death signal, shutting down workers"));
}

TEST_F(LauncherProcessTest, SigintExitsWith130WhenWorkersDoNotExitCleanly) {
  BackgroundProcess launcher(
      launch("--nproc-per-node 2", "trap 'exit 5' TERM\ntouch \"$DIR/ready_$RANK\"\nwhile :; do sleep 0.05; done\n"),
      file("log"));
  ASSERT_TRUE(awaitFiles(launcher, {"ready_0", "ready_1"})) << readTextFile(file("log"));
  launcher.signal(SIGINT);
  const auto code = launcher.wait();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 130) << readTextFile(file("log"));
}

TEST_F(LauncherProcessTest, WorkerIgnoringSigtermIsKilledAfterTheGracePeriod) {
  BackgroundProcess launcher(launch("--nproc-per-node 1 --grace-period 0.5",
                                    "trap '' TERM\necho $$ > \"$DIR/pid\"\ntouch \"$DIR/ready_$RANK\"\n"
                                    "while :; do sleep 0.05; done\n"),
                             file("log"));
  ASSERT_TRUE(awaitFiles(launcher, {"ready_0"})) << readTextFile(file("log"));
  const pid_t worker = std::stoi(readTextFile(file("pid")));
  launcher.signal(SIGTERM);
  const auto code = launcher.wait();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 128 + SIGTERM);
  const std::string log = readTextFile(file("log"));
  EXPECT_THAT(log, HasSubstr("Sending process " + std::to_string(worker) + " (rank 0) closing signal SIGTERM"));
  EXPECT_THAT(log, HasSubstr("Unable to shutdown process " + std::to_string(worker) +
                             " (rank 0) via SIGTERM, forcefully exiting via SIGKILL"));
  EXPECT_FALSE(processAlive(worker));
}

TEST_F(LauncherProcessTest, WorkersDoNotOutliveAKilledLauncher) {
  BackgroundProcess launcher(
      // Written then renamed: the file appears only once it holds the pid.
      launch("--nproc-per-node 2",
             "echo $$ > \"$DIR/pid_$RANK.tmp\"; mv \"$DIR/pid_$RANK.tmp\" \"$DIR/pid_$RANK\"\n"
             "while :; do sleep 0.05; done\n"),
      file("log"));
  ASSERT_TRUE(awaitFiles(launcher, {"pid_0", "pid_1"})) << readTextFile(file("log"));
  const pid_t worker0 = std::stoi(readTextFile(file("pid_0")));
  const pid_t worker1 = std::stoi(readTextFile(file("pid_1")));
  launcher.signal(SIGKILL);
  ASSERT_TRUE(launcher.wait().has_value());
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while ((processAlive(worker0) || processAlive(worker1)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(processAlive(worker0));
  EXPECT_FALSE(processAlive(worker1));
}

TEST_F(LauncherProcessTest, LogDirKeepsFilesAndTeeAlsoEchoes) {
  const std::string body = "echo \"out of $RANK\"; echo \"err of $RANK\" >&2\n";
  const auto quiet = runCommand(launch("--nproc-per-node 2 --rdzv-id quiet --log-dir " + file("logs"), body));
  ASSERT_EQ(quiet.exit_code, 0) << quiet.output;
  EXPECT_THAT(quiet.output, Not(HasSubstr("out of")));
  const auto teed = runCommand(launch("--nproc-per-node 2 --rdzv-id teed --log-dir " + file("logs") + " --tee", body));
  ASSERT_EQ(teed.exit_code, 0) << teed.output;
  EXPECT_THAT(teed.output, HasSubstr("[rank 1]: out of 1"));
  for (const std::string run : {"quiet", "teed"}) {
    int runs = 0;
    for (const auto& entry : std::filesystem::directory_iterator(file("logs"))) {
      if (entry.path().filename().string().rfind(run + "_", 0) != 0) continue;
      ++runs;
      const std::string rank1 = entry.path().string() + "/attempt_0/rank_1/";
      EXPECT_EQ(readTextFile(rank1 + "stdout.log"), "out of 1\n");
      EXPECT_EQ(readTextFile(rank1 + "stderr.log"), "err of 1\n");
    }
    EXPECT_EQ(runs, 1) << run;
  }
}

TEST_F(LauncherProcessTest, MissingProgramIsBadInput) {
  const auto result = runCommand(launcherBinary() + " --nproc-per-node 2 -- " + file("no-such-program"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output, HasSubstr("cannot run " + file("no-such-program") + ": no such file"));
}

TEST_F(LauncherProcessTest, PortInUseNamesThePort) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  const auto result = runCommand(launch("--rdzv-endpoint 127.0.0.1:" + port, "true\n"));
  ::close(fd);
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output, HasSubstr("cannot host the rendezvous store on port " + port +
                                       " (--rdzv-endpoint "
                                       "127.0.0.1:" +
                                       port + ")"));
  EXPECT_THAT(result.output, HasSubstr("Address already in use"));
  EXPECT_THAT(result.output, HasSubstr("pick another port"));
}

TEST_F(LauncherProcessTest, UnreachableEndpointSaysWhatToCheck) {
  const std::string endpoint = "127.0.0.1:" + std::to_string(freePort());
  const auto result =
      runCommand(launch("--nnodes 2 --node-rank 1 --rdzv-timeout 1 --rdzv-endpoint " + endpoint, "true\n"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output, HasSubstr("cannot reach the rendezvous store at " + endpoint + " (--rdzv-endpoint)"));
  EXPECT_THAT(result.output, HasSubstr("Check that loom-launch --node-rank 0 runs on 127.0.0.1"));
  EXPECT_THAT(result.output, HasSubstr("firewall"));
}

TEST_F(LauncherProcessTest, RendezvousTimeoutNamesTheMissingNode) {
  const auto result =
      runCommand(launch("--nnodes 2 --node-rank 0 --rdzv-timeout 0.5 --rdzv-endpoint 127.0.0.1:0", "true\n"));
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_THAT(result.output, HasSubstr("node ranks that did not join: 1."));
}

}  // namespace
}  // namespace loom::launcher::test
