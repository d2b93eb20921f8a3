#include "tests/support/multi_rank.h"

#include "runtime/core/error.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace loom::test {
namespace {

// What the rank threads share: their live communicators (to abort) and the first failure.
class RankTable {
 public:
  explicit RankTable(int world_size) : comms_(world_size, nullptr) {}

  void enter(int rank, dist::Communicator* comm) {
    std::lock_guard<std::mutex> lock(mutex_);
    comms_[rank] = comm;
    if (first_error_) comm->abort();
  }

  void leave(int rank) {
    std::lock_guard<std::mutex> lock(mutex_);
    comms_[rank] = nullptr;
  }

  void fail(int rank, std::exception_ptr error) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (first_error_) return;
    first_error_ = std::move(error);
    first_rank_ = rank;
    for (dist::Communicator* comm : comms_) {
      if (comm != nullptr) comm->abort();
    }
  }

  void rethrowFirst() {
    if (!first_error_) return;
    const std::string where = "on rank " + std::to_string(first_rank_);
    try {
      std::rethrow_exception(first_error_);
    } catch (c10::Error& e) {
      e.add_context(where);
      throw;
    } catch (const std::exception& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
  }

 private:
  std::mutex mutex_;
  std::vector<dist::Communicator*> comms_;
  std::exception_ptr first_error_;
  int first_rank_ = -1;
};

}  // namespace

dist::GlooOptions testGlooOptions() {
  dist::GlooOptions opts;
  opts.hostname = "127.0.0.1";
  opts.comm.timeout = std::chrono::seconds(30);
  return opts;
}

void runRanks(int world_size, const std::function<void(int rank, dist::Communicator& comm)>& body,
              const dist::GlooOptions& opts) {
  LOOM_CHECK_INPUT(world_size >= 1, "runRanks: world size ", world_size, " must be >= 1");
  auto store = c10::make_intrusive<c10d::HashStore>();
  RankTable table(world_size);
  std::vector<std::thread> threads;
  threads.reserve(world_size);
  for (int rank = 0; rank < world_size; ++rank) {
    threads.emplace_back([&, rank] {
      std::unique_ptr<dist::Communicator> comm;
      try {
        comm = dist::makeGlooCommunicator(store, rank, world_size, opts);
        table.enter(rank, comm.get());
        body(rank, *comm);
      } catch (...) {
        table.fail(rank, std::current_exception());  // before `comm` goes: peers stop waiting for it
      }
      table.leave(rank);
    });
  }
  for (std::thread& t : threads) t.join();
  table.rethrowFirst();
}

}  // namespace loom::test
