#include "runtime/dist/gloo_work.h"

#include "runtime/core/error.h"

#include <vector>

namespace loom::dist {

void GlooSignals::finish(GlooOutcome& outcome, std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    outcome.done = true;
    outcome.error = std::move(error);
  }
  changed_.notify_all();
}

void GlooSignals::abort() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    aborted_ = true;
  }
  changed_.notify_all();
}

bool GlooSignals::aborted() {
  std::lock_guard<std::mutex> lock(mutex_);
  return aborted_;
}

std::exception_ptr abortedError() {
  return std::make_exception_ptr(
      c10::Error({__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                 "the communicator was aborted (abort() was called on this rank, e.g. after a peer was lost)"));
}

GlooWork::GlooWork(std::shared_ptr<GlooSignals> signals, std::shared_ptr<GlooOutcome> outcome,
                   c10::intrusive_ptr<c10d::Work> keep_alive)
    : signals_(std::move(signals)), outcome_(std::move(outcome)), keep_alive_(std::move(keep_alive)) {}

std::unique_ptr<BackendWork> GlooWork::settled(std::shared_ptr<GlooSignals> signals, std::exception_ptr error) {
  auto outcome = std::make_shared<GlooOutcome>();
  outcome->done = true;
  outcome->error = std::move(error);
  return std::make_unique<GlooWork>(std::move(signals), std::move(outcome));
}

std::unique_ptr<BackendWork> GlooWork::ofCollective(std::shared_ptr<GlooSignals> signals,
                                                    c10::intrusive_ptr<c10d::Work> work,
                                                    std::function<void()> finalize) {
  auto outcome = std::make_shared<GlooOutcome>();
  work->getFuture()->addCallback([signals, outcome, finalize = std::move(finalize)](c10::ivalue::Future& future) {
    std::exception_ptr error;
    if (future.hasError()) {
      error = future.exception_ptr();
    } else if (finalize) {
      try {
        finalize();
      } catch (...) {
        error = std::current_exception();
      }
    }
    signals->finish(*outcome, std::move(error));
  });
  return std::make_unique<GlooWork>(std::move(signals), std::move(outcome), std::move(work));
}

bool GlooWork::waitFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(signals_->mutex_);
  signals_->changed_.wait_for(lock, timeout, [this] { return outcome_->done || signals_->aborted_; });
  if (outcome_->done) {
    if (outcome_->error) std::rethrow_exception(outcome_->error);
    return true;
  }
  if (signals_->aborted_) std::rethrow_exception(abortedError());
  return false;
}

bool GlooWork::isCompleted() {
  std::lock_guard<std::mutex> lock(signals_->mutex_);
  return outcome_->done;
}

P2pWaiters::~P2pWaiters() {
  abortAll();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    threads.swap(threads_);
  }
  wake_.notify_all();
  for (auto& thread : threads) thread.join();
}

std::unique_ptr<BackendWork> P2pWaiters::watch(std::shared_ptr<GlooSignals> signals,
                                               c10::intrusive_ptr<c10d::Work> work, std::function<void()> finalize) {
  auto outcome = std::make_shared<GlooOutcome>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(Job{work, signals, outcome, std::move(finalize)});
    in_flight_.push_back(work);
    // Every queued job needs a thread of its own: its wait may block until a later one completes.
    if (idle_ < static_cast<int>(queue_.size())) {
      threads_.emplace_back([this] { serve(); });
    }
  }
  wake_.notify_one();
  return std::make_unique<GlooWork>(std::move(signals), std::move(outcome), std::move(work));
}

void P2pWaiters::serve() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    ++idle_;
    wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    --idle_;
    if (queue_.empty()) return;  // stopping
    Job job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    std::exception_ptr error;
    try {
      // false: Work::abort() released the wait before the transfer finished.
      if (!job.work->wait()) {
        error = abortedError();
      } else if (job.finalize) {
        job.finalize();
      }
    } catch (...) {
      error = std::current_exception();
    }
    job.signals->finish(*job.outcome, std::move(error));
    lock.lock();
    for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it) {
      if (it->get() == job.work.get()) {
        in_flight_.erase(it);
        break;
      }
    }
  }
}

void P2pWaiters::abortAll() {
  std::vector<c10::intrusive_ptr<c10d::Work>> pending;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending.assign(in_flight_.begin(), in_flight_.end());
  }
  for (auto& work : pending) work->abort();
}

}  // namespace loom::dist
