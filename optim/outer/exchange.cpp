#include "optim/outer/exchange.h"

#include "optim/outer/group_average.h"
#include "runtime/core/error.h"

#include <chrono>

namespace loom::optim::outer {
namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

Exchange::Exchange(dist::Communicator* exchange, dist::Communicator* fanout, PseudoGradientCodec codec,
                   OuterStats& stats)
    : exchange_(exchange),
      fanout_(fanout != nullptr && fanout->size() > 1 ? fanout : nullptr),
      codec_(codec),
      stats_(stats) {
  const bool replica_leader = fanout_ == nullptr || fanout_->rank() == 0;
  LOOM_CHECK_INPUT(leader() == replica_leader, "outer: the exchange communicator must be given on the replica's rank 0",
                   " and only there (replica rank ", fanout_ == nullptr ? 0 : fanout_->rank(), " of ",
                   fanout_ == nullptr ? 1 : fanout_->size(), ", exchange communicator ", leader() ? "given" : "missing",
                   ")");
}

Exchange::~Exchange() {
  // Never leave a thread writing into buffers that are about to be freed.
  if (result_.valid()) {
    try {
      result_.get();
    } catch (const std::exception&) {  // the owner is being destroyed: nobody is left to tell
    }
  }
}

void Exchange::start(at::Tensor buffer, std::vector<int> group, int tag) {
  LOOM_CHECK(!pending(), "Exchange::start while an exchange is in flight");
  buffer_ = buffer;
  if (!leader()) return;  // the average arrives by the leader's broadcast in wait()
  result_ = std::async(std::launch::async, [this, buffer, group = std::move(group), tag]() mutable {
    const auto begin = Clock::now();
    averageInGroup(*exchange_, group, buffer, codec_, tag);
    return msSince(begin);
  });
}

void Exchange::wait() {
  LOOM_CHECK(pending(), "Exchange::wait without an exchange in flight");
  at::Tensor buffer = buffer_;
  buffer_.reset();  // pending() ends here, whether the exchange succeeds or throws
  const auto begin = Clock::now();
  double comm_ms = leader() ? result_.get() : 0;
  if (fanout_ != nullptr) {
    const auto fanout_begin = Clock::now();
    fanout_->broadcast(buffer, 0)->wait();
    comm_ms += msSince(fanout_begin);
  }
  stats_.exposed_ms += msSince(begin);
  stats_.comm_ms += comm_ms;
}

}  // namespace loom::optim::outer
