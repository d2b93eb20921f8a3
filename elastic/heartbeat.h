// Heartbeats through the job's c10d store (ARCHITECTURE.md §2 "Elastic",
// parallel_elastic.md §4.7 "Detect"): the launcher sees a process die at once,
// but a hung, stopped (SIGSTOP) or partitioned rank is only caught by the
// silence of its heartbeat.
//
// Each rank runs a HeartbeatPublisher that bumps the counter key
// "<prefix>/hb/<rank>" (Store::add) every `interval`. A HeartbeatMonitor reads
// the counters of the ranks it watches and reports those whose counter has not
// changed for longer than `timeout` (TorchFT's default: 5 s). Silence is
// measured on the monitor's own steady clock from the moment it last saw the
// counter change, so no two hosts' clocks are ever compared; its resolution is
// the monitor's polling interval, so poll well below `timeout`.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace loom::elastic {

using HeartbeatClock = std::chrono::steady_clock;

struct HeartbeatOptions {
  /// Namespace of the heartbeat keys: "<prefix>/hb/<rank>".
  std::string prefix = "elastic";
  /// How often a publisher bumps its counter.
  std::chrono::milliseconds interval{std::chrono::seconds(1)};
  /// How long a monitor tolerates an unchanged counter (TorchFT's heartbeat_timeout_ms).
  std::chrono::milliseconds timeout{std::chrono::seconds(5)};
};

/// The store key holding `rank`'s heartbeat counter.
std::string heartbeatKey(const std::string& prefix, int rank);

/// Beats for one rank on a background thread from construction to destruction.
/// The first beat happens before the constructor returns. Store errors are
/// swallowed (the store being gone is detected elsewhere, and a rank that
/// cannot beat is exactly what its peers' monitors will report).
class HeartbeatPublisher {
 public:
  HeartbeatPublisher(c10::intrusive_ptr<c10d::Store> store, int rank, HeartbeatOptions opts = {});
  /// Stops the thread without waiting out the interval.
  ~HeartbeatPublisher();
  HeartbeatPublisher(const HeartbeatPublisher&) = delete;
  HeartbeatPublisher& operator=(const HeartbeatPublisher&) = delete;

  /// Test hook: stop beating while the thread lives on, as a hung rank would.
  void pause();
  /// Beat again (at once) after pause().
  void resume();
  /// Beats published so far by this publisher.
  int64_t beats() const;

 private:
  void run();
  void beat();

  c10::intrusive_ptr<c10d::Store> store_;
  std::string key_;
  std::chrono::milliseconds interval_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool paused_ = false;
  int64_t beats_ = 0;
  std::thread thread_;
};

/// A rank whose heartbeat counter has not changed for longer than the timeout.
struct SilentRank {
  int rank;
  std::chrono::milliseconds silent_for;
};

/// Watches the heartbeat counters of `ranks`. A rank counts as last seen at the
/// monitor's construction, so one that never beats is reported `timeout` later.
/// Thread-safe. Store errors propagate (PeerLostError: the store itself is lost).
class HeartbeatMonitor {
 public:
  HeartbeatMonitor(c10::intrusive_ptr<c10d::Store> store, std::vector<int> ranks, HeartbeatOptions opts = {},
                   HeartbeatClock::time_point now = HeartbeatClock::now());

  /// Reads every watched counter once and returns the ranks silent for longer
  /// than the timeout as of `now`, in the order they were given.
  std::vector<int> silentRanks(HeartbeatClock::time_point now = HeartbeatClock::now());
  /// Like silentRanks(), with how long each has been silent.
  std::vector<SilentRank> poll(HeartbeatClock::time_point now = HeartbeatClock::now());

  /// Names the silent ranks of the last poll and for how long, e.g. "rank 2 sent
  /// no heartbeat for 5.3 s (timeout 5 s): hung, stopped (SIGSTOP) or
  /// partitioned"; empty when the last poll found none. No store access.
  std::string describe() const;

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  struct Watched {
    int rank;
    int64_t counter = -1;  // -1: not read yet
    HeartbeatClock::time_point last_change;
  };

  c10::intrusive_ptr<c10d::Store> store_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
  mutable std::mutex mutex_;
  std::vector<Watched> watched_;
  std::vector<SilentRank> last_silent_;
};

/// "rank 2 sent no heartbeat for 5.3 s (timeout 5 s): ..." for `silent`; empty when it is.
std::string describeSilentRanks(const std::vector<SilentRank>& silent, std::chrono::milliseconds timeout);

}  // namespace loom::elastic
