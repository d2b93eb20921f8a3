// The CPU communication stream (parallel/comm_stream.h): jobs run in the order
// they were queued, a job's exception fails its own ticket only, a ticket of no
// job throws instead of blocking, and destroying a stream lets the running job
// finish but cancels the ones that had not started.
#include "parallel/comm_stream.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace loom::parallel {
namespace {

TEST(CommStreamTest, RunsJobsInSubmissionOrder) {
  CommStream stream;
  std::vector<int> order;  // touched by the worker only, read after the last wait
  std::vector<CommTicket> tickets;
  for (int i = 0; i < 50; ++i) tickets.push_back(stream.submit([&order, i] { order.push_back(i); }));
  tickets.back().wait();
  std::vector<int> expected(50);
  for (int i = 0; i < 50; ++i) expected[i] = i;
  EXPECT_EQ(order, expected);
  EXPECT_EQ(stream.stats().jobs, 50);
}

TEST(CommStreamTest, AJobsExceptionFailsItsOwnTicketOnly) {
  CommStream stream;
  bool after_ran = false;
  CommTicket failing = stream.submit([] { throw std::runtime_error("job 1 failed"); });
  CommTicket after = stream.submit([&] { after_ran = true; });
  EXPECT_THROW(
      {
        try {
          failing.wait();
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "job 1 failed");
          throw;
        }
      },
      std::runtime_error);
  after.wait();
  EXPECT_TRUE(after_ran);
}

TEST(CommStreamTest, ATicketOfNoJobThrowsInsteadOfBlocking) {
  CommTicket never_submitted;
  EXPECT_THROW(never_submitted.wait(), c10::Error);
}

TEST(CommStreamTest, DestroyingTheStreamFinishesTheRunningJobAndCancelsTheQueuedOnes) {
  auto stream = std::make_unique<CommStream>();
  std::promise<void> started, release;
  bool running_finished = false, queued_ran = false;
  CommTicket running = stream->submit([&] {
    started.set_value();
    release.get_future().wait();
    running_finished = true;
  });
  CommTicket queued = stream->submit([&] { queued_ran = true; });
  std::once_flag released;
  const auto releaseRunning = [&] { std::call_once(released, [&] { release.set_value(); }); };
  started.get_future().wait();
  std::thread destroyer([&] { stream.reset(); });
  // The queued job's ticket fails while the running job still blocks the worker.
  // Without cancellation the wait would last until the running job ends: the
  // watchdog then releases it after 30 s, and the ticket completes without error.
  std::promise<void> checked;
  std::thread watchdog([&, done = checked.get_future()] {
    if (done.wait_for(std::chrono::seconds(30)) == std::future_status::timeout) releaseRunning();
  });
  try {
    queued.wait();
    ADD_FAILURE() << "the queued job's ticket completed without error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos) << e.what();
  }
  checked.set_value();
  watchdog.join();
  releaseRunning();
  destroyer.join();
  running.wait();
  EXPECT_TRUE(running_finished);
  EXPECT_FALSE(queued_ran);
}

}  // namespace
}  // namespace loom::parallel
