// The threads that make an MPI communicator asynchronous (internal to runtime/dist).
//
// Open MPI progresses communication only while some thread is inside an MPI
// call, so an MPI_Iallreduce left alone while the caller computes does not
// advance. Like c10d's ProcessGroupMPI, loom therefore runs blocking MPI calls
// on a dedicated thread fed by a queue, in issue order: the caller returns at
// once and the operation progresses while the caller computes. That thread
// spins inside MPI while an operation is in flight (Open MPI polls); it sleeps
// on a condition variable when the queue is empty.
#pragma once

#include "runtime/dist/communicator.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace loom::dist {

/// State shared by one communicator's threads and its Work objects. One mutex
/// and one condition variable for all of them: operations complete at most a
/// few thousand times a second, so contention does not matter and abort() can
/// wake every waiter at once.
struct MpiSignals {
  std::mutex mutex;
  std::condition_variable changed;
  bool aborted = false;  // guarded by mutex
};

/// Completion of one operation; guarded by MpiSignals::mutex.
struct MpiOpSlot {
  bool done = false;
  std::exception_ptr error;
};

/// The Work of an operation run by an MpiExecutor.
class MpiWork final : public BackendWork {
 public:
  MpiWork(std::shared_ptr<MpiSignals> signals, std::shared_ptr<MpiOpSlot> slot);

  /// A work that has already failed with `error` (for failures at issue time).
  static std::unique_ptr<BackendWork> failed(std::shared_ptr<MpiSignals> signals, std::exception_ptr error);

  /// Throws the operation's error, or c10::Error when the communicator was
  /// aborted before the operation completed.
  bool waitFor(std::chrono::milliseconds timeout) override;
  /// True once the operation completed or failed, or the communicator was aborted.
  bool isCompleted() override;

 private:
  std::shared_ptr<MpiSignals> signals_;
  std::shared_ptr<MpiOpSlot> slot_;
};

/// What happens to queued tasks after the communicator was aborted.
enum class AfterAbort {
  kSkip,  ///< fail them without running (a collective not yet started must not start)
  kRun,   ///< run them anyway (waiting for an already posted request keeps its buffer alive)
};

/// Runs tasks one at a time, in submission order, on its own thread (started
/// on first use). Thread-safe.
class MpiExecutor {
 public:
  MpiExecutor(std::shared_ptr<MpiSignals> signals, AfterAbort after_abort);
  /// Runs what is queued, then joins the thread. After an abort, if the thread
  /// still has work it is detached instead: a task blocked inside MPI (waiting
  /// for a lost peer) cannot be interrupted. The thread keeps what its tasks
  /// captured (buffers, the MPI communicator) alive until they finish.
  ~MpiExecutor();
  MpiExecutor(const MpiExecutor&) = delete;
  MpiExecutor& operator=(const MpiExecutor&) = delete;

  /// Queues `task`; its exception, if any, becomes the operation's error.
  /// After the communicator was aborted, the returned work fails at once (and
  /// with AfterAbort::kRun the task still runs).
  std::unique_ptr<BackendWork> submit(std::function<void()> task);

 private:
  struct Task {
    std::function<void()> run;
    std::shared_ptr<MpiOpSlot> slot;
  };
  // Shared with the thread, which may outlive this executor after an abort.
  struct Queue {
    std::deque<Task> tasks;
    bool stop = false;
    bool running = false;  // a task is inside MPI
  };
  static void loop(std::shared_ptr<MpiSignals> signals, std::shared_ptr<Queue> queue, AfterAbort after_abort);

  std::shared_ptr<MpiSignals> signals_;
  AfterAbort after_abort_;
  std::shared_ptr<Queue> queue_;  // guarded by signals_->mutex
  std::thread thread_;            // guarded by signals_->mutex
};

}  // namespace loom::dist
