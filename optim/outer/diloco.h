// DiLoCo in its three schedules, and CO2, which is DiLoCo's delayed schedule
// with its own outer rule (outer_optimizer.h, docs/outer.md).
//
// Schedule, with H = sync_every, P fragments, s = H / P, tau = fragment_delay:
//   synchronous / streaming: after step t with (t + tau) % s == 0, fragment
//     f = (t + tau) / s - 1 mod P sends D_f = global_f - local_f; after step
//     t with t % s == 0 the average has arrived (waited for if not), the rule
//     updates global_f, and local_f <- global_f + alpha (local_f - global_f).
//     P = 1, tau = 0 is synchronous DiLoCo.
//   delayed (async DiLoCo, CO2): at the end of round r (step r H), the average
//     of round r - 1 is waited for, D_r = global - local is sent, the rule
//     applies the round r - 1 average to global, and local <- global. Round 1
//     applies nothing; finish() applies the last average.
// Every send keeps a copy of this rank's contribution in the other outgoing
// buffer (free then: the previous average has been applied), so an in-memory
// snapshot can restart the exchange in flight without waiting for it.
#pragma once

#include "optim/outer/exchange.h"
#include "optim/outer/flat_parameters.h"
#include "optim/outer/outer_optimizer.h"
#include "optim/outer/outer_rule.h"

namespace loom::optim::outer {

class DiLoCo final : public OuterOptimizer {
 public:
  /// fragment_sizes: FlatParameters::fragments' sizes (empty: the parameters' element counts).
  DiLoCo(NamedTensors params, const OuterComms& comms, const OuterOptions& opts,
         const std::vector<int64_t>& fragment_sizes = {});

  void afterInnerStep(int64_t step) override;
  void finish() override;
  NamedTensors stateTensors() override;
  void loadState(const NamedTensors& state) override;
  NamedTensors snapshotState() override;
  const OuterStats& stats() const override { return stats_; }
  int64_t stateBytes() const override;

 private:
  void fill(FlatRange range);   ///< outgoing_[next_] over range <- D = global - local
  void start(FlatRange range);  ///< keeps a copy of outgoing_[next_] and starts averaging it over range
  at::Tensor receive();         ///< the buffer holding the average last sent, once it has arrived
  void awaitArrival();          ///< waits for the exchange in flight, if any
  void apply(FlatRange range, const at::Tensor& average, double alpha);
  void endDelayedRound();

  FlatParameters flat_;
  OuterOptions opts_;
  OuterRule rule_;
  std::vector<FlatRange> fragments_;
  std::vector<int> group_;  ///< every rank of the exchange communicator; empty on non-leaders
  at::Tensor global_;       ///< the weights replicas agreed on (fp32, flat)
  at::Tensor momentum_;
  /// Two send buffers: one in flight (then holding its average until it is
  /// applied), the other a copy of what was sent, zero outside the range.
  at::Tensor outgoing_[2];
  at::Tensor local_;  ///< scratch: local weights of a fragment, for alpha > 0
  int next_ = 0;      ///< outgoing_ buffer the next send fills
  int awaited_ = -1;  ///< outgoing_ buffer whose average is in flight or ready; -1: none
  FlatRange awaited_range_;
  bool sent_kept_ = false;  ///< outgoing_[1 - awaited_] holds what was sent (false after loading outer.pending)
  OuterStats stats_;
  Exchange exchange_;
};

}  // namespace loom::optim::outer
