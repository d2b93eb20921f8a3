// The failure summary (torchrun's layout), signal names and hints, the error
// file protocol, and the record that travels through the store.
#include "launcher/failure_report.h"
#include "launcher/job_coordinator.h"
#include "tests/support/test_util.h"

#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <csignal>

namespace loom::launcher {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

WorkerFailure killedWorker() {
  WorkerFailure f;
  f.time = "2024-05-19_16:39:58";
  f.unix_time = 1716129598.25;
  f.host = "node7";
  f.node_rank = 1;
  f.rank = 6;
  f.local_rank = 2;
  f.pid = 4242;
  f.status.signaled = true;
  f.status.signal = SIGKILL;
  f.stderr_tail = {"allocating 80 GiB", "still allocating"};
  return f;
}

TEST(ExitStatusTest, WaitStatusesMapToTorchrunAndShellCodes) {
  const ExitStatus exited = ExitStatus::fromWaitStatus(3 << 8);  // as waitpid reports exit(3)
  EXPECT_FALSE(exited.signaled);
  EXPECT_EQ(exited.torchrunCode(), 3);
  EXPECT_EQ(exited.shellCode(), 3);
  const ExitStatus killed = ExitStatus::fromWaitStatus(SIGKILL);  // as waitpid reports a SIGKILL death
  ASSERT_TRUE(WIFSIGNALED(SIGKILL));
  EXPECT_TRUE(killed.signaled);
  EXPECT_EQ(killed.torchrunCode(), -9);
  EXPECT_EQ(killed.shellCode(), 137);
  EXPECT_TRUE(ExitStatus::fromWaitStatus(0).success());
}

TEST(ExitStatusTest, SignalsHaveNamesAndHints) {
  EXPECT_EQ(signalName(SIGKILL), "SIGKILL");
  EXPECT_EQ(signalName(SIGABRT), "SIGABRT");
  EXPECT_EQ(signalName(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(signalName(SIGRTMIN + 1), "SIG" + std::to_string(SIGRTMIN + 1));
  ExitStatus status;
  status.signaled = true;
  status.signal = SIGKILL;
  EXPECT_THAT(exitHint(status), HasSubstr("often the OOM killer (check dmesg"));
  status.signal = SIGABRT;
  EXPECT_THAT(exitHint(status), HasSubstr("an abort, e.g. a failed check or a watchdog"));
  status.signal = SIGSEGV;
  EXPECT_THAT(exitHint(status), HasSubstr("segmentation fault"));
  const ExitStatus bad_input{2, 0, false};
  EXPECT_THAT(exitHint(bad_input), HasSubstr("bad config or input"));
  EXPECT_EQ(exitHint(ExitStatus{1, 0, false}), "");
}

TEST(FailureSummaryTest, FollowsTorchrunsLayoutWithHintAndStderr) {
  const std::string summary = formatFailureSummary("loom-train", killedWorker(), {});
  const std::string expected_root =
      "Root Cause (first observed failure):\n"
      "[0]:\n"
      "  time      : 2024-05-19_16:39:58\n"
      "  host      : node7 (node_rank: 1)\n"
      "  rank      : 6 (local_rank: 2)\n"
      "  exitcode  : -9 (pid: 4242)\n"
      "  error_file: <N/A>\n"
      "  traceback : Signal 9 (SIGKILL) received by PID 4242\n"
      "  hint      : SIGKILL is often the OOM killer (check dmesg or the job's memory limit)\n"
      "  stderr    : last 2 line(s) of rank 6:\n"
      "    | allocating 80 GiB\n"
      "    | still allocating\n";
  EXPECT_THAT(summary, HasSubstr("loom-train FAILED\n"));
  EXPECT_THAT(summary, HasSubstr("Failures:\n  <NO_OTHER_FAILURES>\n"));
  EXPECT_THAT(summary, HasSubstr(expected_root));
  EXPECT_EQ(summary.rfind(std::string(60, '='), 0), 0u);
}

TEST(FailureSummaryTest, ListsOtherFailuresBeforeTheRootCause) {
  WorkerFailure other = killedWorker();
  other.rank = 2;
  other.status = ExitStatus{1, 0, false};
  other.stderr_tail.clear();
  const std::string summary = formatFailureSummary("train.sh", killedWorker(), {other});
  const size_t other_at = summary.find("[1]:\n");
  const size_t root_at = summary.find("Root Cause");
  ASSERT_NE(other_at, std::string::npos);
  EXPECT_LT(other_at, root_at);
  EXPECT_THAT(summary.substr(other_at, root_at - other_at), HasSubstr("rank      : 2 (local_rank: 2)"));
  EXPECT_THAT(summary.substr(other_at, root_at - other_at), HasSubstr("exitcode  : 1 (pid: 4242)"));
  EXPECT_THAT(summary, Not(HasSubstr("<NO_OTHER_FAILURES>")));
}

TEST(ErrorFileTest, ReadsTorchelasticJsonNestedAndFlat) {
  loom::test::TempDir dir;
  WorkerFailure nested;
  loom::test::writeTextFile(dir.file("nested.json"),
                            R"({"message": {"message": "RuntimeError: boom", "extraInfo": )"
                            R"({"py_callstack": "frame 1\nframe 2", "timestamp": "1716129598"}}})");
  readErrorFile(dir.file("nested.json"), &nested);
  EXPECT_EQ(nested.error_file, dir.file("nested.json"));
  EXPECT_EQ(nested.error_message, "RuntimeError: boom");
  EXPECT_EQ(nested.traceback, "frame 1\nframe 2");
  EXPECT_THAT(formatFailureSummary("p", nested, {}), HasSubstr("  traceback :\n    frame 1\n    frame 2\n"));

  WorkerFailure flat;
  loom::test::writeTextFile(dir.file("flat.json"), R"({"message": "loom-train: bad shard"})");
  readErrorFile(dir.file("flat.json"), &flat);
  EXPECT_EQ(flat.error_message, "loom-train: bad shard");

  WorkerFailure broken;
  loom::test::writeTextFile(dir.file("broken.json"), "not json");
  readErrorFile(dir.file("broken.json"), &broken);
  EXPECT_THAT(broken.error_message, HasSubstr("unreadable"));

  WorkerFailure none;
  readErrorFile(dir.file("absent.json"), &none);
  EXPECT_EQ(none.error_file, "");
  EXPECT_EQ(none.error_message, "");
}

TEST(FailureRecordTest, RoundTripsThroughJson) {
  const WorkerFailure f = killedWorker();
  const WorkerFailure back = failureFromJson(failureToJson(f));
  EXPECT_EQ(formatFailureSummary("p", back, {}), formatFailureSummary("p", f, {}));
  EXPECT_EQ(back.unix_time, f.unix_time);

  AttemptOutcome outcome;
  outcome.failure = f;
  outcome.node_rank = 1;
  outcome.host = "node7";
  const AttemptOutcome parsed = AttemptOutcome::fromJson(outcome.toJson());
  EXPECT_EQ(parsed.kind, AttemptOutcome::Kind::kFailed);
  EXPECT_EQ(parsed.failure.rank, 6);
  EXPECT_EQ(parsed.host, "node7");
  AttemptOutcome stop;
  stop.kind = AttemptOutcome::Kind::kStopped;
  stop.signal = SIGTERM;
  EXPECT_EQ(AttemptOutcome::fromJson(stop.toJson()).signal, SIGTERM);
  EXPECT_THROW(failureFromJson("{\"rank\": 1}"), c10::Error);
}

TEST(FailureRecordTest, RootCauseIsEarliestThenLowestRank) {
  WorkerFailure a = killedWorker();
  WorkerFailure b = killedWorker();
  b.unix_time = a.unix_time + 0.001;
  b.rank = 0;
  EXPECT_TRUE(observedBefore(a, b));
  EXPECT_FALSE(observedBefore(b, a));
  b.unix_time = a.unix_time;
  EXPECT_TRUE(observedBefore(b, a));
}

}  // namespace
}  // namespace loom::launcher
