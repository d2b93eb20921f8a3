#include "parallel/comm_stream.h"

namespace loom::parallel {

using Clock = std::chrono::steady_clock;

void CommTicket::wait() {
  const auto start = Clock::now();
  std::unique_lock<std::mutex> lock(state_->mutex);
  const bool blocked = !state_->done;
  state_->cv.wait(lock, [&] { return state_->done; });
  if (blocked && stream_ != nullptr) stream_->addExposed(Clock::now() - start);
  if (state_->error) std::rethrow_exception(state_->error);
}

bool CommTicket::done() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->done;
}

CommStream::CommStream() : worker_([this] { loop(); }) {}

CommStream::~CommStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

CommTicket CommStream::submit(std::function<void()> job) {
  CommTicket ticket;
  ticket.stream_ = this;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.emplace_back(std::move(job), ticket.state_);
  }
  cv_.notify_one();
  return ticket;
}

void CommStream::loop() {
  for (;;) {
    std::function<void()> job;
    std::shared_ptr<CommTicket::State> state;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and every queued job has run
      job = std::move(queue_.front().first);
      state = std::move(queue_.front().second);
      queue_.pop_front();
    }
    const auto start = Clock::now();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.busy_ms += ms;
      ++stats_.jobs;
    }
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      state->done = true;
      state->error = error;
    }
    state->cv.notify_all();
  }
}

void CommStream::addExposed(std::chrono::nanoseconds waited) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.exposed_ms += std::chrono::duration<double, std::milli>(waited).count();
}

CommStreamStats CommStream::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CommStream::resetStats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = {};
}

}  // namespace loom::parallel
