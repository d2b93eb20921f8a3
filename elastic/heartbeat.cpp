#include "elastic/heartbeat.h"

#include "runtime/core/error.h"

#include <cstdio>
#include <exception>
#include <sstream>
#include <utility>

namespace loom::elastic {
namespace {

// Seconds with one decimal ("5.3"), or whole ("5") when that is exact.
std::string seconds(std::chrono::milliseconds ms) {
  char text[32];
  if (ms.count() % 1000 == 0) {
    std::snprintf(text, sizeof(text), "%lld", static_cast<long long>(ms.count() / 1000));
  } else if (ms.count() % 100 == 0) {
    std::snprintf(text, sizeof(text), "%.1f", static_cast<double>(ms.count()) / 1000.0);
  } else {
    std::snprintf(text, sizeof(text), "%.2f", static_cast<double>(ms.count()) / 1000.0);
  }
  return text;
}

}  // namespace

std::string heartbeatKey(const std::string& prefix, int rank) {
  return prefix + "/hb/" + std::to_string(rank);
}

HeartbeatPublisher::HeartbeatPublisher(c10::intrusive_ptr<c10d::Store> store, int rank, HeartbeatOptions opts)
    : store_(std::move(store)), key_(heartbeatKey(opts.prefix, rank)), interval_(opts.interval) {
  LOOM_CHECK_INPUT(store_, "heartbeat: rank ", rank, " has no store to beat into");
  LOOM_CHECK_INPUT(interval_.count() > 0, "heartbeat: the interval must be positive, got ", interval_.count(), " ms");
  beat();
  thread_ = std::thread([this] { run(); });
}

HeartbeatPublisher::~HeartbeatPublisher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void HeartbeatPublisher::pause() {
  std::lock_guard<std::mutex> lock(mutex_);
  paused_ = true;
}

void HeartbeatPublisher::resume() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    paused_ = false;
  }
  beat();
}

int64_t HeartbeatPublisher::beats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return beats_;
}

void HeartbeatPublisher::beat() {
  try {
    store_->add(key_, 1);
  } catch (const std::exception&) {
    return;  // best effort: silence is what the monitors report
  }
  std::lock_guard<std::mutex> lock(mutex_);
  ++beats_;
}

void HeartbeatPublisher::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, interval_, [this] { return stop_; })) {
    if (paused_) continue;
    lock.unlock();
    beat();
    lock.lock();
  }
}

HeartbeatMonitor::HeartbeatMonitor(c10::intrusive_ptr<c10d::Store> store, std::vector<int> ranks, HeartbeatOptions opts,
                                   HeartbeatClock::time_point now)
    : store_(std::move(store)), prefix_(std::move(opts.prefix)), timeout_(opts.timeout) {
  LOOM_CHECK_INPUT(store_, "heartbeat monitor: no store to read");
  LOOM_CHECK_INPUT(timeout_.count() > 0, "heartbeat monitor: the timeout must be positive, got ", timeout_.count(),
                   " ms");
  watched_.reserve(ranks.size());
  for (int rank : ranks) watched_.push_back(Watched{rank, -1, now});
}

std::vector<int> HeartbeatMonitor::silentRanks(HeartbeatClock::time_point now) {
  std::vector<int> ranks;
  for (const SilentRank& silent : poll(now)) ranks.push_back(silent.rank);
  return ranks;
}

std::vector<SilentRank> HeartbeatMonitor::poll(HeartbeatClock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<SilentRank> silent;
  for (Watched& w : watched_) {
    int64_t counter = 0;
    try {
      counter = store_->add(heartbeatKey(prefix_, w.rank), 0);  // reads without blocking on a missing key
    } catch (const std::exception& e) {
      LOOM_THROW(PeerLostError, "heartbeat monitor: cannot read rank ", w.rank, "'s heartbeat (",
                 heartbeatKey(prefix_, w.rank), "): the store is lost: ", errorMessage(e));
    }
    // The first read is a baseline: a counter that was already there proves
    // nothing about now, so silence still counts from construction.
    if (w.counter >= 0 && counter != w.counter) w.last_change = now;
    w.counter = counter;
    const auto quiet = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.last_change);
    if (quiet > timeout_) silent.push_back(SilentRank{w.rank, quiet});
  }
  last_silent_ = silent;
  return silent;
}

std::string HeartbeatMonitor::describe() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return describeSilentRanks(last_silent_, timeout_);
}

std::string describeSilentRanks(const std::vector<SilentRank>& silent, std::chrono::milliseconds timeout) {
  if (silent.empty()) return "";
  std::ostringstream out;
  out << (silent.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < silent.size(); ++i) {
    char quiet[32];
    std::snprintf(quiet, sizeof(quiet), "%.1f", static_cast<double>(silent[i].silent_for.count()) / 1000.0);
    out << (i ? ", " : "") << silent[i].rank;
    if (silent.size() > 1) out << " (" << quiet << " s)";
    if (silent.size() == 1) out << " sent no heartbeat for " << quiet << " s";
  }
  if (silent.size() > 1) out << " sent no heartbeat";
  out << " (timeout " << seconds(timeout) << " s): hung, stopped (SIGSTOP) or partitioned";
  return out.str();
}

}  // namespace loom::elastic
