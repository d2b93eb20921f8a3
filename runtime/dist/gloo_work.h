// The waitable side of the Gloo communicator (internal to runtime/dist).
//
// Every operation a GlooCommunicator issues gets an outcome that one shared
// GlooSignals announces: Gloo's worker threads (collectives) and one waiter
// thread per send/recv record completions there, and abort() wakes every wait
// at once. So GlooWork::waitFor() honours any timeout, however long Gloo itself
// would wait, and never polls.
#pragma once

#include "runtime/dist/communicator.h"

#include <torch/csrc/distributed/c10d/Work.hpp>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace loom::dist {

/// One operation's result. Guarded by GlooSignals::mutex.
struct GlooOutcome {
  bool done = false;
  std::exception_ptr error;
};

/// Shared by a communicator and every operation it issued (which may outlive it).
class GlooSignals {
 public:
  void finish(GlooOutcome& outcome, std::exception_ptr error);
  /// Pending and later waits throw at once. Idempotent.
  void abort();
  bool aborted();

 private:
  friend class GlooWork;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool aborted_ = false;
};

/// The error of an operation on an aborted communicator.
std::exception_ptr abortedError();

class GlooWork final : public BackendWork {
 public:
  GlooWork(std::shared_ptr<GlooSignals> signals, std::shared_ptr<GlooOutcome> outcome,
           c10::intrusive_ptr<c10d::Work> keep_alive = {});

  /// Done (or failed) on return.
  static std::unique_ptr<BackendWork> settled(std::shared_ptr<GlooSignals> signals, std::exception_ptr error = {});

  /// A c10d collective: its future completes on Gloo's worker thread, which then
  /// runs `finalize` (e.g. averaging, copying a staged tensor back) before the
  /// outcome is published. `finalize` may be empty.
  static std::unique_ptr<BackendWork> ofCollective(std::shared_ptr<GlooSignals> signals,
                                                   c10::intrusive_ptr<c10d::Work> work, std::function<void()> finalize);

  bool waitFor(std::chrono::milliseconds timeout) override;
  bool isCompleted() override;

 private:
  std::shared_ptr<GlooSignals> signals_;
  std::shared_ptr<GlooOutcome> outcome_;
  c10::intrusive_ptr<c10d::Work> keep_alive_;
};

/// Waits for c10d's send/recv works. Their wait() cannot be sliced (a Gloo wait
/// that times out closes every connection of the context), so each pending
/// operation occupies a thread blocked in wait(); abortAll() releases them
/// through c10d's Work::abort(). The threads are pooled: one that finished
/// waits for the next operation, and a new one starts only when every thread
/// is busy, so no operation waits behind another and steady traffic creates
/// no threads. The destructor aborts what is still pending and joins every
/// thread, so none outlives the communicator.
class P2pWaiters {
 public:
  P2pWaiters() = default;
  ~P2pWaiters();
  P2pWaiters(const P2pWaiters&) = delete;
  P2pWaiters& operator=(const P2pWaiters&) = delete;

  /// `finalize` runs on the waiter thread after a successful wait.
  std::unique_ptr<BackendWork> watch(std::shared_ptr<GlooSignals> signals, c10::intrusive_ptr<c10d::Work> work,
                                     std::function<void()> finalize);
  void abortAll();

 private:
  struct Job {
    c10::intrusive_ptr<c10d::Work> work;
    std::shared_ptr<GlooSignals> signals;
    std::shared_ptr<GlooOutcome> outcome;
    std::function<void()> finalize;
  };
  void serve();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::list<Job> queue_;                                  // GUARDED_BY(mutex_): not yet taken by a thread
  std::list<c10::intrusive_ptr<c10d::Work>> in_flight_;  // GUARDED_BY(mutex_): queued or being waited for
  std::vector<std::thread> threads_;                      // GUARDED_BY(mutex_)
  int idle_ = 0;                                          // GUARDED_BY(mutex_): threads waiting for a job
  bool stop_ = false;                                     // GUARDED_BY(mutex_)
};

}  // namespace loom::dist
