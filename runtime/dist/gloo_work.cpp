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
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& waiter : waiters_) waiter->thread.join();
}

void P2pWaiters::reapFinished() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if ((*it)->finished.load()) {
      (*it)->thread.join();
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

std::unique_ptr<BackendWork> P2pWaiters::watch(std::shared_ptr<GlooSignals> signals,
                                               c10::intrusive_ptr<c10d::Work> work, std::function<void()> finalize) {
  auto outcome = std::make_shared<GlooOutcome>();
  auto waiter = std::make_unique<Waiter>();
  waiter->work = work;
  Waiter* raw = waiter.get();
  std::lock_guard<std::mutex> lock(mutex_);
  reapFinished();
  waiter->thread = std::thread([raw, signals, outcome, finalize = std::move(finalize)] {
    std::exception_ptr error;
    try {
      // false: Work::abort() released the wait before the transfer finished.
      if (!raw->work->wait()) {
        error = abortedError();
      } else if (finalize) {
        finalize();
      }
    } catch (...) {
      error = std::current_exception();
    }
    signals->finish(*outcome, std::move(error));
    raw->finished.store(true);
  });
  waiters_.push_back(std::move(waiter));
  return std::make_unique<GlooWork>(std::move(signals), std::move(outcome), std::move(work));
}

void P2pWaiters::abortAll() {
  std::vector<c10::intrusive_ptr<c10d::Work>> pending;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& waiter : waiters_) {
      if (!waiter->finished.load()) pending.push_back(waiter->work);
    }
  }
  for (auto& work : pending) work->abort();
}

}  // namespace loom::dist
