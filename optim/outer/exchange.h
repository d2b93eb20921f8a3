// One group average (group_average.h) that may run while inner steps compute:
// start() hands the buffer to a background thread, wait() joins it. The buffer
// belongs to the exchange between the two calls.
//
// With a fan-out (OuterComms::replica of more than one rank) only the
// replica's leader averages; wait() then broadcasts the leader's buffer to the
// replica's members on the calling thread, so the fan-out communicator is never
// used from the background thread. A non-leader's start() only records the
// buffer, and its wait() receives the average by that broadcast.
#pragma once

#include "optim/outer/outer_optimizer.h"

#include <future>
#include <vector>

namespace loom::optim::outer {

class Exchange {
 public:
  /// `exchange`: one rank per replica, nullptr on a non-leader; `fanout`: the
  /// replica (its rank 0 is the leader), nullptr or size 1 for none. `stats`
  /// receives comm_ms (time in flight, fan-out included) and exposed_ms (time
  /// wait() blocked). Throws InputError unless `exchange` is set exactly on
  /// the leader.
  Exchange(dist::Communicator* exchange, dist::Communicator* fanout, PseudoGradientCodec codec, OuterStats& stats);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  /// Whether this rank averages with the other replicas (holds `exchange`).
  bool leader() const { return exchange_ != nullptr; }

  /// Starts averaging `buffer` (contiguous fp32) over `group` (ranks of the
  /// exchange communicator; ignored on a non-leader). REQUIRES: !pending().
  void start(at::Tensor buffer, std::vector<int> group, int tag);
  /// Blocks until the average is in the buffer; rethrows the exchange's error
  /// (PeerLostError names the operation and the ranks). REQUIRES: pending().
  void wait();
  bool pending() const { return buffer_.defined(); }

 private:
  dist::Communicator* exchange_;
  dist::Communicator* fanout_;  ///< nullptr when the replica is this rank alone
  PseudoGradientCodec codec_;
  OuterStats& stats_;
  at::Tensor buffer_;           ///< the buffer in flight; undefined when none
  std::future<double> result_;  ///< leader only: milliseconds the average took
};

}  // namespace loom::optim::outer
