// Where the ranks of one communicator publish how far they got, so that a rank
// whose operation timed out can say which ranks never started it
// (ecosystem.md §6.1: "which collective, which missing rank").
//
// started() is an atomic store on the hot path; a background thread copies the
// latest sequence number to the store about once per publish interval. The
// board is only read after a failure, so its cost is one small store write per
// interval per rank.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace loom::dist {

class ProgressBoard {
 public:
  /// `store` is private to this communicator (e.g. a PrefixStore); ranks 0..size-1 share it.
  ProgressBoard(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                std::chrono::milliseconds publish_interval = std::chrono::milliseconds(500));
  ~ProgressBoard();
  ProgressBoard(const ProgressBoard&) = delete;
  ProgressBoard& operator=(const ProgressBoard&) = delete;

  /// This rank started operation `seq` (1-based, increasing).
  void started(uint64_t seq) { latest_.store(seq, std::memory_order_relaxed); }

  /// The ranks whose last published operation is below `seq`, with that
  /// operation's number (0: none published yet). Best effort: a store that
  /// does not answer within a second yields what was read so far.
  std::vector<std::pair<int, uint64_t>> laggards(uint64_t seq);

 private:
  void publishLoop();
  void publish(uint64_t seq);

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  int size_;
  std::chrono::milliseconds interval_;
  std::atomic<uint64_t> latest_{0};
  uint64_t published_ = 0;  // owned by the publisher thread
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread publisher_;
};

}  // namespace loom::dist
