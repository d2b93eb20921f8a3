#include "runtime/dist/progress_board.h"

#include <string>

namespace loom::dist {
namespace {

std::string keyOf(int rank) { return "progress/" + std::to_string(rank); }

}  // namespace

ProgressBoard::ProgressBoard(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                             std::chrono::milliseconds publish_interval)
    : store_(std::move(store)), rank_(rank), size_(size), interval_(publish_interval) {
  publish(0);
  publisher_ = std::thread([this] { publishLoop(); });
}

ProgressBoard::~ProgressBoard() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  publisher_.join();
}

void ProgressBoard::publish(uint64_t seq) {
  const std::string text = std::to_string(seq);
  store_->set(keyOf(rank_), std::vector<uint8_t>(text.begin(), text.end()));
  published_ = seq;
}

void ProgressBoard::publishLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, interval_, [this] { return stop_; })) {
    const uint64_t seq = latest_.load(std::memory_order_relaxed);
    if (seq == published_) continue;
    lock.unlock();
    try {
      publish(seq);
    } catch (const std::exception&) {
      // The store is gone (job ending or a peer lost): the board is best effort.
    }
    lock.lock();
  }
}

std::vector<std::pair<int, uint64_t>> ProgressBoard::laggards(uint64_t seq) {
  std::vector<std::pair<int, uint64_t>> behind;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (int r = 0; r < size_ && std::chrono::steady_clock::now() < deadline; ++r) {
    if (r == rank_) continue;
    try {
      uint64_t theirs = 0;
      if (store_->check({keyOf(r)})) {
        const std::vector<uint8_t> bytes = store_->get(keyOf(r));
        theirs = std::stoull(std::string(bytes.begin(), bytes.end()));
      }
      if (theirs < seq) behind.emplace_back(r, theirs);
    } catch (const std::exception&) {
      behind.emplace_back(r, 0);
    }
  }
  return behind;
}

}  // namespace loom::dist
