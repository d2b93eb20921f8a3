#include "runtime/dist/mpi_executor.h"

#include "runtime/core/error.h"
#include "runtime/dist/mpi_environment.h"

namespace loom::dist {
namespace {

std::exception_ptr abortedError() {
  try {
    LOOM_THROW(c10::Error, "the communicator was aborted before this operation completed");
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace

MpiWork::MpiWork(std::shared_ptr<MpiSignals> signals, std::shared_ptr<MpiOpSlot> slot)
    : signals_(std::move(signals)), slot_(std::move(slot)) {}

std::unique_ptr<BackendWork> MpiWork::failed(std::shared_ptr<MpiSignals> signals, std::exception_ptr error) {
  auto slot = std::make_shared<MpiOpSlot>();
  slot->done = true;
  slot->error = std::move(error);
  return std::make_unique<MpiWork>(std::move(signals), std::move(slot));
}

bool MpiWork::waitFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(signals_->mutex);
  if (!signals_->changed.wait_for(lock, timeout, [this] { return slot_->done || signals_->aborted; })) return false;
  if (!slot_->done) std::rethrow_exception(abortedError());
  if (slot_->error) std::rethrow_exception(slot_->error);
  return true;
}

bool MpiWork::isCompleted() {
  std::lock_guard<std::mutex> lock(signals_->mutex);
  return slot_->done || signals_->aborted;
}

MpiExecutor::MpiExecutor(std::shared_ptr<MpiSignals> signals, AfterAbort after_abort)
    : signals_(std::move(signals)), after_abort_(after_abort), queue_(std::make_shared<Queue>()) {}

MpiExecutor::~MpiExecutor() {
  bool detach = false;
  {
    std::lock_guard<std::mutex> lock(signals_->mutex);
    queue_->stop = true;
    detach = signals_->aborted && (queue_->running || !queue_->tasks.empty());
  }
  signals_->changed.notify_all();
  if (!thread_.joinable()) return;
  if (detach) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

std::unique_ptr<BackendWork> MpiExecutor::submit(std::function<void()> task) {
  auto slot = std::make_shared<MpiOpSlot>();
  {
    std::lock_guard<std::mutex> lock(signals_->mutex);
    if (signals_->aborted && after_abort_ == AfterAbort::kSkip) return MpiWork::failed(signals_, abortedError());
    queue_->tasks.push_back(Task{std::move(task), slot});
    if (!thread_.joinable()) {
      MpiEnvironment::instance().communicationThreadStarted();
      thread_ = std::thread(&MpiExecutor::loop, signals_, queue_, after_abort_);
    }
  }
  signals_->changed.notify_all();
  return std::make_unique<MpiWork>(signals_, std::move(slot));
}

void MpiExecutor::loop(std::shared_ptr<MpiSignals> signals, std::shared_ptr<Queue> queue, AfterAbort after_abort) {
  std::unique_lock<std::mutex> lock(signals->mutex);
  while (true) {
    signals->changed.wait(lock, [&] { return !queue->tasks.empty() || queue->stop; });
    if (queue->tasks.empty()) break;  // stopped and drained
    Task task = std::move(queue->tasks.front());
    queue->tasks.pop_front();
    std::exception_ptr error;
    if (signals->aborted && after_abort == AfterAbort::kSkip) {
      error = abortedError();
      task.run = nullptr;
    } else {
      queue->running = true;
      lock.unlock();
      try {
        task.run();
      } catch (...) {
        error = std::current_exception();
      }
      task.run = nullptr;  // release what the task captured (tensors, the MPI communicator) outside the lock
      lock.lock();
      queue->running = false;
    }
    task.slot->done = true;
    task.slot->error = std::move(error);
    signals->changed.notify_all();
  }
  lock.unlock();
  // Drop the last references (the communicator handle may be freed here) before saying we left MPI.
  queue.reset();
  signals.reset();
  MpiEnvironment::instance().communicationThreadFinished();
}

}  // namespace loom::dist
