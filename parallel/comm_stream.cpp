#include "parallel/comm_stream.h"

#include "runtime/core/error.h"

#include <stdexcept>
#include <utility>

namespace loom::parallel {

using Clock = std::chrono::steady_clock;

void CommTicket::wait() {
  LOOM_CHECK(state_ != nullptr, "CommTicket::wait: this ticket belongs to no job (it was never submitted)");
  const auto start = Clock::now();
  std::unique_lock<std::mutex> lock(state_->mutex);
  const bool blocked = !state_->done;
  state_->cv.wait(lock, [&] { return state_->done; });
  if (blocked) {
    const std::lock_guard<std::mutex> counting(counters_->mutex);
    counters_->stats.exposed_ms += std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }
  if (state_->error) std::rethrow_exception(state_->error);
}

CommStream::CommStream() : worker_([this] { loop(); }) {}

void CommStream::complete(CommTicket::State& state, std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    state.done = true;
    state.error = std::move(error);
  }
  state.cv.notify_all();
}

CommStream::~CommStream() {
  std::deque<std::pair<std::function<void()>, std::shared_ptr<CommTicket::State>>> unstarted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    unstarted.swap(queue_);
  }
  cv_.notify_all();
  for (auto& [job, state] : unstarted) {
    complete(*state, std::make_exception_ptr(std::runtime_error(
                         "the communication stream was destroyed before this job ran: the job was cancelled")));
  }
  worker_.join();
}

CommTicket CommStream::submit(std::function<void()> job) {
  CommTicket ticket;
  ticket.state_ = std::make_shared<CommTicket::State>();
  ticket.counters_ = counters_;
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
      if (queue_.empty()) return;  // stopping
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
      std::lock_guard<std::mutex> lock(counters_->mutex);
      counters_->stats.busy_ms += ms;
      ++counters_->stats.jobs;
    }
    complete(*state, std::move(error));
  }
}

CommStreamStats CommStream::stats() const {
  std::lock_guard<std::mutex> lock(counters_->mutex);
  return counters_->stats;
}

void CommStream::resetStats() {
  std::lock_guard<std::mutex> lock(counters_->mutex);
  counters_->stats = {};
}

}  // namespace loom::parallel
