// One group average (group_average.h) that may run while inner steps compute:
// start() hands the buffer to a background thread, wait() joins it. The buffer
// belongs to the exchange between the two calls.
#pragma once

#include "optim/outer/outer_optimizer.h"

#include <future>
#include <vector>

namespace loom::optim::outer {

class Exchange {
 public:
  /// `stats` receives comm_ms (time in flight) and exposed_ms (time wait() blocked).
  Exchange(dist::Communicator& comm, PseudoGradientCodec codec, OuterStats& stats);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  /// Starts averaging `buffer` (contiguous fp32) over `group` (ranks of comm).
  /// REQUIRES: !pending().
  void start(at::Tensor buffer, std::vector<int> group, int tag);
  /// Blocks until the average is in the buffer; rethrows the exchange's error
  /// (PeerLostError names the operation and the ranks). REQUIRES: pending().
  void wait();
  bool pending() const { return result_.valid(); }

 private:
  dist::Communicator& comm_;
  PseudoGradientCodec codec_;
  OuterStats& stats_;
  std::future<double> result_;  ///< milliseconds the exchange took
};

}  // namespace loom::optim::outer
