// Heartbeats through a store: beating ranks are never reported, a rank that
// stops beating (paused publisher, never-started rank, SIGSTOPped process) is
// reported after the timeout with a message naming it, and shutdown is prompt.
#include "elastic/heartbeat.h"

#include "runtime/dist/rendezvous.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <thread>

namespace loom::elastic {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = HeartbeatClock;

HeartbeatOptions fastOptions() {
  HeartbeatOptions opts;
  opts.prefix = "test";
  opts.interval = 50ms;
  opts.timeout = 300ms;
  return opts;
}

// Polls `monitor` every 20 ms until it reports someone or `limit` passes.
std::vector<int> pollUntilSilent(HeartbeatMonitor& monitor, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    std::vector<int> silent = monitor.silentRanks();
    if (!silent.empty()) return silent;
    std::this_thread::sleep_for(20ms);
  }
  return {};
}

TEST(HeartbeatTest, BeatingRanksAreNeverReported) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  std::vector<std::unique_ptr<HeartbeatPublisher>> publishers;
  for (int rank = 0; rank < 3; ++rank)
    publishers.push_back(std::make_unique<HeartbeatPublisher>(store, rank, fastOptions()));
  HeartbeatMonitor monitor(store, {0, 1, 2}, fastOptions());
  const auto end = Clock::now() + 1s;  // over three timeouts
  while (Clock::now() < end) {
    EXPECT_THAT(monitor.silentRanks(), ElementsAre());
    EXPECT_EQ(monitor.describe(), "");
    std::this_thread::sleep_for(20ms);
  }
  for (const auto& publisher : publishers) EXPECT_GE(publisher->beats(), 15);
}

TEST(HeartbeatTest, PausedRankIsReportedAfterTheTimeoutAndClearsOnResume) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  HeartbeatPublisher rank0(store, 0, fastOptions());
  HeartbeatPublisher rank1(store, 1, fastOptions());
  HeartbeatPublisher rank2(store, 2, fastOptions());
  HeartbeatMonitor monitor(store, {0, 1, 2}, fastOptions());
  ASSERT_THAT(monitor.silentRanks(), ElementsAre());  // the baseline read
  std::this_thread::sleep_for(120ms);
  ASSERT_THAT(monitor.silentRanks(), ElementsAre());  // sees every counter move

  rank2.pause();  // hangs: the thread lives, the counter stops
  const auto paused_at = Clock::now();
  EXPECT_THAT(pollUntilSilent(monitor, 2s), ElementsAre(2));
  const auto detected_after = Clock::now() - paused_at;
  // Silence counts from the last change the monitor saw: at most one interval
  // plus one poll before the pause.
  EXPECT_GE(detected_after, 300ms - 50ms - 20ms);
  EXPECT_LT(detected_after, 300ms + 250ms);
  EXPECT_THAT(monitor.describe(), HasSubstr("rank 2 sent no heartbeat for 0."));
  EXPECT_THAT(monitor.describe(), HasSubstr("(timeout 0.3 s): hung, stopped (SIGSTOP) or partitioned"));

  rank2.resume();
  EXPECT_THAT(monitor.silentRanks(), ElementsAre());
  EXPECT_EQ(monitor.describe(), "");
}

TEST(HeartbeatTest, RankThatNeverBeatsIsReportedOnTheMonitorsClock) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  HeartbeatOptions opts = fastOptions();
  opts.timeout = 5s;
  const Clock::time_point start = Clock::now();
  HeartbeatMonitor monitor(store, {0, 1, 2}, opts, start);
  store->add(heartbeatKey("test", 0), 1);
  EXPECT_THAT(monitor.silentRanks(start + 1s), ElementsAre());  // baseline read
  store->add(heartbeatKey("test", 0), 1);
  EXPECT_THAT(monitor.silentRanks(start + 5s), ElementsAre());  // exactly the timeout is not over it
  EXPECT_THAT(monitor.silentRanks(start + 5300ms), ElementsAre(1, 2));
  EXPECT_EQ(monitor.describe(),
            "ranks 1 (5.3 s), 2 (5.3 s) sent no heartbeat (timeout 5 s): hung, stopped (SIGSTOP) or partitioned");

  HeartbeatMonitor single(store, {1}, opts, start);
  EXPECT_THAT(single.silentRanks(start + 6100ms), ElementsAre(1));
  EXPECT_EQ(single.describe(),
            "rank 1 sent no heartbeat for 6.1 s (timeout 5 s): hung, stopped (SIGSTOP) or partitioned");
}

TEST(HeartbeatTest, ShutdownDoesNotWaitOutTheInterval) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  HeartbeatOptions opts = fastOptions();
  opts.interval = 10s;
  const auto start = Clock::now();
  {
    HeartbeatPublisher publisher(store, 0, opts);
    EXPECT_EQ(publisher.beats(), 1);  // the first beat is in the constructor
    EXPECT_EQ(store->add(heartbeatKey("test", 0), 0), 1);
  }
  EXPECT_LT(Clock::now() - start, 1s);
}

// Kills (and reaps) the child on every exit path of the test.
struct ChildGuard {
  pid_t pid;
  ~ChildGuard() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
  }
};

TEST(HeartbeatTest, StoppedProcessIsReportedWithinTheTimeout) {
  const auto server = dist::hostStore("127.0.0.1", 0, 2, 10s);
  const int port = server->getPort();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    // The child: rank 1 beating into the parent's store until it is killed.
    try {
      auto store = dist::joinStore("127.0.0.1", port, 10s);
      HeartbeatPublisher publisher(store, 1, fastOptions());
      while (true) std::this_thread::sleep_for(1s);
    } catch (...) {
      _exit(3);
    }
  }
  ChildGuard guard{pid};
  const std::string key = heartbeatKey("test", 1);
  const auto connect_deadline = Clock::now() + 10s;
  while (server->add(key, 0) < 3 && Clock::now() < connect_deadline) std::this_thread::sleep_for(10ms);
  ASSERT_GE(server->add(key, 0), 3) << "the child never beat";

  HeartbeatMonitor monitor(server, {1}, fastOptions());
  ASSERT_THAT(monitor.silentRanks(), ElementsAre());
  std::this_thread::sleep_for(120ms);
  ASSERT_THAT(monitor.silentRanks(), ElementsAre());

  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  const auto stopped_at = Clock::now();
  EXPECT_THAT(pollUntilSilent(monitor, 3s), ElementsAre(1));
  EXPECT_GE(Clock::now() - stopped_at, 300ms - 50ms - 20ms);
  EXPECT_LT(Clock::now() - stopped_at, 300ms + 300ms);
  EXPECT_THAT(monitor.describe(), HasSubstr("rank 1 sent no heartbeat"));

  ASSERT_EQ(kill(pid, SIGCONT), 0);
  const auto resume_deadline = Clock::now() + 2s;
  std::vector<int> silent = monitor.silentRanks();
  while (!silent.empty() && Clock::now() < resume_deadline) {
    std::this_thread::sleep_for(20ms);
    silent = monitor.silentRanks();
  }
  EXPECT_THAT(silent, ElementsAre()) << "the continued child did not beat again";
}

}  // namespace
}  // namespace loom::elastic
