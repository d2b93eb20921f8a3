// A CPU "communication stream": one worker thread that runs jobs (collectives
// and the small kernels between them) in the order they were queued, while the
// calling thread computes. It plays the part of TokenWeave's high-priority
// copy stream on the CPU (parallel_elastic.md §3.4).
//
// Every collective of a tensor-parallel group goes through its stream, so all
// ranks issue them in one order even when compute and communication overlap.
// The stream measures how long its jobs ran and how long callers were blocked
// waiting for them: the exposed communication the benchmarks report.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace loom::parallel {

struct CommStreamStats {
  double busy_ms = 0;     ///< time jobs ran on the stream
  double exposed_ms = 0;  ///< time callers were blocked in CommTicket::wait()
  int64_t jobs = 0;
};

/// A stream's statistics, shared with its tickets so that a ticket may be
/// waited on while (or after) its stream is destroyed.
struct CommStreamCounters {
  mutable std::mutex mutex;
  CommStreamStats stats;
};

/// A job's completion; wait() rethrows the job's exception. It waits without
/// a deadline of its own: a job's collectives carry their communicator's
/// timeouts, so every job ends. A ticket that belongs to no job (default
/// constructed) throws instead of waiting.
class CommTicket {
 public:
  void wait();

 private:
  friend class CommStream;
  struct State {
    mutable std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::exception_ptr error;
  };
  std::shared_ptr<State> state_;
  std::shared_ptr<CommStreamCounters> counters_;
};

class CommStream {
 public:
  CommStream();
  /// Lets the running job finish, fails the tickets of the jobs that have not
  /// started (a stream destroyed with jobs queued is unwinding from an error:
  /// their collectives would only wait out their timeouts one after another),
  /// then joins the worker.
  ~CommStream();
  CommStream(const CommStream&) = delete;
  CommStream& operator=(const CommStream&) = delete;

  /// Queues `job`; it runs after every job queued before it. A job that throws
  /// fails its own ticket only.
  CommTicket submit(std::function<void()> job);

  CommStreamStats stats() const;
  void resetStats();

 private:
  void loop();
  static void complete(CommTicket::State& state, std::exception_ptr error);

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<CommTicket::State>>> queue_;
  bool stopping_ = false;
  std::shared_ptr<CommStreamCounters> counters_ = std::make_shared<CommStreamCounters>();
  std::thread worker_;
};

}  // namespace loom::parallel
