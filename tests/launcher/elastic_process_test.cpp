// loom-launch's elastic mode as a real process, with shell-script workers that
// carry `--config job.pbtxt` (an elastic config) but ignore it: a death is
// reported in the store and the survivors keep running, REPLACE starts joiners
// within --max-restarts, a worker whose peers declared it dead is killed even
// when stopped, and the exit code comes from the workers that ran to the end.
// The test reads and writes the elastic keys as a worker would, through a
// client of the launcher-hosted store.
#include "runtime/dist/elastic_keys.h"
#include "runtime/dist/rendezvous.h"
#include "tests/launcher/launcher_test_util.h"
#include "tests/support/test_util.h"

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

namespace loom::launcher::test {
namespace {

using loom::test::readTextFile;
using loom::test::runCommand;
using loom::test::shellQuote;
using ::testing::HasSubstr;
using ::testing::Not;

namespace keys = dist::elastic_keys;

// Waits (in the worker, up to 60 s) until $DIR/<name> exists.
std::string awaitFile(const std::string& name) {
  return "i=0; while [ ! -e \"$DIR/" + name + "\" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n";
}

// Waits until ranks 0..N-1 other than itself touched $DIR/ready_<rank>.
std::string awaitReady(int world) {
  std::string text = "touch \"$DIR/ready_$RANK\"\n";
  for (int r = 0; r < world; ++r) text += awaitFile("ready_" + std::to_string(r));
  return text;
}

const std::string kRecordStart =
    "echo x >> \"$DIR/starts_$RANK\"\n"
    "env | grep -E '^(RANK|LOCAL_RANK|WORLD_SIZE|LOOM_ELASTIC_[A-Z]*)=' | sort > \"$DIR/env_$LOOM_ELASTIC_ID\"\n";

std::string key(const std::string& name) {
  return keys::root(0) + "/" + name;
}

class ElasticProcessTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_.file(name); }
  bool exists(const std::string& name) const { return std::filesystem::exists(file(name)); }

  /// loom-launch `flags` running `script_body` as `worker.sh --config job.pbtxt`,
  /// where job.pbtxt has `elastic_section`.
  std::string launch(const std::string& flags, const std::string& elastic_section,
                     const std::string& script_body) const {
    loom::test::writeTextFile(file("job.pbtxt"),
                              "data { train_path: \"none.bin\" }\n"
                              "train { global_batch: 12 micro_batch: 1 }\n" +
                                  elastic_section + "\n");
    writeScript(file("worker.sh"), script_body);
    return "env DIR=" + shellQuote(dir_.path()) + " TMPDIR=" + shellQuote(dir_.path()) + " " + launcherBinary() +
           " --monitor-interval 0.05 " + flags + " -- " + file("worker.sh") + " --config " + file("job.pbtxt");
  }

  /// A client of the store the launcher whose log is `log` hosts.
  c10::intrusive_ptr<c10d::TCPStore> storeOf(const std::string& log) const {
    return dist::joinStore("127.0.0.1", waitForStorePort(log), std::chrono::seconds(30));
  }

  static std::string text(c10d::Store& store, const std::string& name) {
    const std::vector<uint8_t> value = store.get(name);
    return std::string(value.begin(), value.end());
  }

  static void setText(c10d::Store& store, const std::string& name, const std::string& value) {
    store.set(name, std::vector<uint8_t>(value.begin(), value.end()));
  }

  void release() const { loom::test::writeTextFile(file("release"), ""); }

  loom::test::TempDir dir_;
};

TEST_F(ElasticProcessTest, ShrinkReportsTheDeathAndTheSurvivorsContinue) {
  BackgroundProcess launcher(
      launch("--nproc-per-node 3", "elastic { policy: SHRINK min_ranks: 1 }",
             kRecordStart + awaitReady(3) + "[ \"$RANK\" = 1 ] && exit 9\n" + awaitFile("release") + "exit 0\n"),
      file("log"));
  auto store = storeOf(file("log"));
  ASSERT_TRUE(waitForText(file("log"), "exited with code 9: lost; reported to its peers"));
  // The survivors are still running, and the store holds the death for them.
  EXPECT_FALSE(exists("release"));
  ASSERT_TRUE(store->check({key("dead/1")}));
  EXPECT_THAT(text(*store, key("dead/1")), ::testing::MatchesRegex("rank 1 \\(pid [0-9]+\\) exited with code 9"));
  EXPECT_EQ(store->add(key(keys::kFailures), 0), 1);
  release();
  const auto code = launcher.wait();
  const std::string log = readTextFile(file("log"));
  ASSERT_EQ(code, 0) << log;
  EXPECT_THAT(log, HasSubstr("elastic mode: policy shrink, min_ranks 1 (from --config " + file("job.pbtxt") + ")"));
  EXPECT_THAT(log, ::testing::ContainsRegex("rank 1 \\(id 1, pid [0-9]+\\) exited with code 9: lost"));
  EXPECT_THAT(log, HasSubstr("elastic: 1 worker(s) lost and recovered from: rank 1 (id 1) exited with code 9 at "));
  EXPECT_THAT(log, HasSubstr("; replacements started: none"));
  EXPECT_THAT(log, Not(HasSubstr("closing signal SIGTERM")));
  EXPECT_THAT(log, Not(HasSubstr("FAILED")));
  for (const std::string rank : {"0", "1", "2"}) EXPECT_EQ(readTextFile(file("starts_" + rank)), "x\n") << rank;
  EXPECT_THAT(readTextFile(file("env_0")), HasSubstr("LOOM_ELASTIC_ID=0\n"));
  EXPECT_THAT(readTextFile(file("env_2")), HasSubstr("LOOM_ELASTIC_ID=2\n"));
}

TEST_F(ElasticProcessTest, ReplaceStartsAJoinerUntilTheBudgetIsUsed) {
  // Id 1 dies; its replacement (id 3) dies too, and gets no replacement (--max-restarts 1).
  // LOOM_ELASTIC_JOIN in the launcher's own environment must not reach the initial workers.
  const auto result =
      runCommand("env LOOM_ELASTIC_JOIN=1 " +
                 launch("--nproc-per-node 3 --max-restarts 1 --rdzv-id rep --log-dir " + file("logs") + " --tee",
                        "elastic { policy: REPLACE min_ranks: 1 }",
                        kRecordStart + "echo \"id $LOOM_ELASTIC_ID\"\n" +
                            "case \"$LOOM_ELASTIC_ID\" in\n  1) kill -9 $$ ;;\n  3) exit 1 ;;\nesac\n" +
                            awaitFile("env_3") + "exit 0\n"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string joiner = readTextFile(file("env_3"));
  EXPECT_EQ(joiner, "LOCAL_RANK=1\nLOOM_ELASTIC_ID=3\nLOOM_ELASTIC_JOIN=1\nRANK=1\nWORLD_SIZE=3\n");
  EXPECT_EQ(readTextFile(file("env_0")), "LOCAL_RANK=0\nLOOM_ELASTIC_ID=0\nRANK=0\nWORLD_SIZE=3\n");
  EXPECT_EQ(readTextFile(file("env_1")), "LOCAL_RANK=1\nLOOM_ELASTIC_ID=1\nRANK=1\nWORLD_SIZE=3\n");
  EXPECT_EQ(readTextFile(file("starts_1")), "x\nx\n");
  EXPECT_EQ(readTextFile(file("starts_0")), "x\n");
  EXPECT_THAT(result.output, ::testing::ContainsRegex("elastic: replacing rank 1 \\(id 1\\) with id 3 \\(pid [0-9]+\\) "
                                                      "as rank 1; 0/1 replacements left"));
  EXPECT_THAT(result.output, HasSubstr("[rank 1]: id 3\n"));
  EXPECT_THAT(result.output, HasSubstr("elastic: no replacement for rank 1 (id 3): 0/1 replacements left "
                                       "(--max-restarts); continuing with the survivors"));
  EXPECT_THAT(result.output, HasSubstr("elastic: 2 worker(s) lost and recovered from: rank 1 (id 1) was killed by "
                                       "SIGKILL at "));
  EXPECT_THAT(result.output, HasSubstr("; rank 1 (id 3) exited with code 1 at "));
  EXPECT_THAT(result.output, HasSubstr("; replacements started: id 3\n"));
  int runs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(file("logs"))) {
    ++runs;
    const std::string attempt = entry.path().string() + "/attempt_0/";
    EXPECT_EQ(readTextFile(attempt + "rank_1/stdout.log"), "id 1\n");
    EXPECT_EQ(readTextFile(attempt + "rank_1_id3/stdout.log"), "id 3\n");
  }
  EXPECT_EQ(runs, 1);
}

TEST_F(ElasticProcessTest, WorkerEvictedByItsPeersIsKilledEvenWhenStopped) {
  BackgroundProcess launcher(launch("--nproc-per-node 3", "elastic { policy: SHRINK min_ranks: 1 }",
                                    "echo $$ > \"$DIR/pid_$RANK.tmp\"; mv \"$DIR/pid_$RANK.tmp\" \"$DIR/pid_$RANK\"\n" +
                                        awaitFile("release") + "exit 0\n"),
                             file("log"));
  auto store = storeOf(file("log"));
  for (const std::string rank : {"0", "1", "2"}) ASSERT_TRUE(waitForText(file("pid_" + rank), "\n"));
  const pid_t hung = std::stoi(readTextFile(file("pid_1")));
  ASSERT_EQ(::kill(hung, SIGSTOP), 0);  // as a hung rank: alive, silent
  const auto declared = std::chrono::steady_clock::now();
  setText(*store, key("dead/1"), "sent no heartbeat for 5.2 s");
  const auto deadline = declared + kPatience;
  while (processAlive(hung) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_FALSE(processAlive(hung));
  std::cout
      << "eviction: killed "
      << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - declared).count()
      << " ms after dead/1 was written\n";
  EXPECT_TRUE(waitForText(file("log"), "rank 1 (id 1, pid " + std::to_string(hung) +
                                           ") evicted by its peers: sent no heartbeat for 5.2 s; killing it"));
  EXPECT_EQ(store->add(key(keys::kFailures), 0), 0);  // the evicting peer counts its own finding
  EXPECT_EQ(text(*store, key("dead/1")), "sent no heartbeat for 5.2 s");
  release();
  const auto code = launcher.wait();
  const std::string log = readTextFile(file("log"));
  ASSERT_EQ(code, 0) << log;
  EXPECT_THAT(log, HasSubstr("elastic: 1 worker(s) lost and recovered from: rank 1 (id 1) evicted by its peers "
                             "(sent no heartbeat for 5.2 s) at "));
}

TEST_F(ElasticProcessTest, SurvivorsStoppingByThemselvesGiveTheExitCode) {
  // Rank 1 is killed; the survivors then stop with 3 ("peer lost", as below min_ranks).
  const auto result = runCommand(launch("--nproc-per-node 3", "elastic { policy: SHRINK min_ranks: 1 }",
                                        awaitReady(3) + "[ \"$RANK\" = 1 ] && kill -9 $$\nsleep 0.3\nexit 3\n"));
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_THAT(result.output, ::testing::ContainsRegex("rank 0 \\(id 0, pid [0-9]+\\) exited with code 3: it stopped "
                                                      "by itself"));
  EXPECT_THAT(result.output, HasSubstr("elastic: 1 worker(s) lost: rank 1 (id 1) was killed by SIGKILL at "));
  EXPECT_THAT(result.output, HasSubstr("elastic: all workers of this node exited: exit code 3"));
  EXPECT_THAT(result.output, Not(HasSubstr("FAILED")));
}

TEST_F(ElasticProcessTest, EveryWorkerLostEndsWithTheRootCauseSummary) {
  const auto result = runCommand(launch("--nproc-per-node 2", "elastic { policy: SHRINK min_ranks: 1 }",
                                        awaitReady(2) + "[ \"$RANK\" = 0 ] && exit 7\nsleep 0.3\nexit 9\n"));
  EXPECT_EQ(result.exit_code, 7) << result.output;
  EXPECT_THAT(result.output, HasSubstr("worker.sh FAILED"));
  const size_t root = result.output.find("Root Cause (first observed failure):\n[0]:\n");
  ASSERT_NE(root, std::string::npos) << result.output;
  EXPECT_THAT(result.output.substr(root), HasSubstr("  exitcode  : 7 (pid: "));
  EXPECT_THAT(result.output, HasSubstr("  exitcode  : 9 (pid: "));  // under Failures
  EXPECT_THAT(result.output, HasSubstr("elastic: 2 worker(s) lost: rank 0 (id 0) exited with code 7 at "));
}

TEST_F(ElasticProcessTest, FinishedTrainingReleasesAJoinerStillRunning) {
  // Id 1 dies; its replacement (id 2) never exits by itself. Once the workers set
  // `finished` (here: the test) and rank 0 exits, the joiner gets the grace period, then SIGTERM.
  BackgroundProcess launcher(
      launch("--nproc-per-node 2 --max-restarts 1 --grace-period 0.3", "elastic { policy: REPLACE min_ranks: 1 }",
             "case \"$LOOM_ELASTIC_ID\" in\n"
             "  1) kill -9 $$ ;;\n"
             "  2) echo $$ > \"$DIR/joiner\"; while :; do sleep 0.05; done ;;\n"
             "esac\n" +
                 awaitFile("release") + "exit 0\n"),
      file("log"));
  auto store = storeOf(file("log"));
  ASSERT_TRUE(waitForText(file("joiner"), "\n"));
  const pid_t joiner = std::stoi(readTextFile(file("joiner")));
  setText(*store, key(keys::kFinished), "1");
  release();
  const auto code = launcher.wait();
  const std::string log = readTextFile(file("log"));
  ASSERT_EQ(code, 0) << log;
  EXPECT_THAT(log, HasSubstr("elastic: training finished; replacement(s) still running get 0.3 s (--grace-period) "
                             "to exit"));
  EXPECT_THAT(log, HasSubstr("Sending process " + std::to_string(joiner) + " (rank 1) closing signal SIGTERM"));
  EXPECT_FALSE(processAlive(joiner));
}

TEST_F(ElasticProcessTest, BadConfigStopsTheJobBeforeAnyWorkerStarts) {
  const auto result = runCommand(
      launch("--nproc-per-node 2", "elastic { policy: SHRINK min_ranks: 5 }", "touch \"$DIR/started_$RANK\"\n"));
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(result.output, HasSubstr("elastic.min_ranks (5) exceeds the starting world size (2)"));
  EXPECT_FALSE(exists("started_0"));
  EXPECT_FALSE(exists("started_1"));
}

TEST_F(ElasticProcessTest, ConfigWithoutElasticKeepsTheGroupFailurePolicy) {
  const auto result = runCommand(
      launch("--nproc-per-node 2", "",
             "trap 'exit 0' TERM\n" + awaitReady(2) + "[ \"$RANK\" = 1 ] && exit 1\nwhile :; do sleep 0.05; done\n"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_THAT(result.output, HasSubstr("closing signal SIGTERM"));
  EXPECT_THAT(result.output, HasSubstr("worker.sh FAILED"));
  EXPECT_THAT(result.output, Not(HasSubstr("elastic")));
}

TEST_F(ElasticProcessTest, SigtermStopsEveryWorker) {
  BackgroundProcess launcher(launch("--nproc-per-node 2", "elastic { policy: SHRINK min_ranks: 1 }",
                                    "trap 'echo term > \"$DIR/term_$RANK\"; exit 0' TERM\n" + awaitReady(2) +
                                        "while :; do sleep 0.05; done\n"),
                             file("log"));
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while ((!exists("ready_0") || !exists("ready_1")) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  launcher.signal(SIGTERM);
  const auto code = launcher.wait();
  ASSERT_EQ(code, 0) << readTextFile(file("log"));
  EXPECT_TRUE(exists("term_0"));
  EXPECT_TRUE(exists("term_1"));
  EXPECT_THAT(readTextFile(file("log")), HasSubstr("Received SIGTERM death signal, shutting down workers"));
}

TEST_F(ElasticProcessTest, TwoNodesOutliveALostWorkerAndNodeZeroWaitsForTheOther) {
  // Node 1 loses rank 3; node 0's workers are done first, and its launcher (the
  // store's host) keeps running until node 1's last worker exits.
  const std::string endpoint = "127.0.0.1:" + std::to_string(freePort());
  const std::string body = awaitReady(4) +
                           "[ \"$RANK\" = 3 ] && exit 9\n"
                           "[ \"$RANK\" = 2 ] && { " +
                           awaitFile("release") + "}\nexit 0\n";
  const std::string node0 =
      launch("--nnodes 2 --nproc-per-node 2 --rdzv-timeout 60 --node-rank 0 --rdzv-endpoint " + endpoint,
             "elastic { policy: SHRINK min_ranks: 1 }", body);
  BackgroundProcess first(node0, file("log0"));
  BackgroundProcess second(
      launch("--nnodes 2 --nproc-per-node 2 --rdzv-timeout 60 --node-rank 1 --rdzv-endpoint " + endpoint,
             "elastic { policy: SHRINK min_ranks: 1 }", body),
      file("log1"));
  ASSERT_TRUE(waitForText(file("log1"), "rank 3 (id 3, pid "));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(first.wait(std::chrono::milliseconds(0)).has_value()) << readTextFile(file("log0"));
  release();
  const auto code1 = second.wait();
  const auto code0 = first.wait();
  EXPECT_EQ(code1, 0) << readTextFile(file("log1"));
  EXPECT_EQ(code0, 0) << readTextFile(file("log0"));
  EXPECT_THAT(readTextFile(file("log1")), HasSubstr("exited with code 9: lost; reported to its peers"));
  EXPECT_THAT(readTextFile(file("log0")), Not(HasSubstr("lost")));
  EXPECT_THAT(readTextFile(file("log0")), Not(HasSubstr("closing signal")));
}

}  // namespace
}  // namespace loom::launcher::test
