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

Exchange::Exchange(dist::Communicator& comm, PseudoGradientCodec codec, OuterStats& stats)
    : comm_(comm), codec_(codec), stats_(stats) {}

Exchange::~Exchange() {
  // Never leave a thread writing into buffers that are about to be freed.
  if (pending()) {
    try {
      result_.get();
    } catch (const std::exception&) {  // the owner is being destroyed: nobody is left to tell
    }
  }
}

void Exchange::start(at::Tensor buffer, std::vector<int> group, int tag) {
  LOOM_CHECK(!pending(), "Exchange::start while an exchange is in flight");
  result_ = std::async(std::launch::async, [this, buffer, group = std::move(group), tag]() mutable {
    const auto begin = Clock::now();
    averageInGroup(comm_, group, buffer, codec_, tag);
    return msSince(begin);
  });
}

void Exchange::wait() {
  LOOM_CHECK(pending(), "Exchange::wait without an exchange in flight");
  const auto begin = Clock::now();
  const double comm_ms = result_.get();
  stats_.exposed_ms += msSince(begin);
  stats_.comm_ms += comm_ms;
}

}  // namespace loom::optim::outer
