// NoLoCo (../shared/reference/optimizers.md §3, jkolehm/noloco's
// sparse_optimizer): no collective. Every sync_every steps replica i, with
// outer weights phi_i, local weights theta_i and its own momentum m_i, averages
// with the other members of its group G (pairing.h) the two vectors phi and
// d = theta - phi, then
//   m_i   <- mu m_i + beta mean_G(d) + gamma (mean_G(phi) - phi_i)
//   phi_i <- phi_i + m_i;   theta_i <- phi_i
// with beta = lr and gamma = consensus. The consensus terms of a group sum to
// zero, so the mean of phi over replicas moves like DiLoCo with heavy-ball
// momentum; momentum is never sent. Each replica sends and receives
// 2 (n - 1) / n * 2 N values per sync, whatever the number of replicas.
// With a fan-out only leaders draw groups and average; the other members of a
// replica receive the leader's averaged buffer and make the same update, so a
// replica's members stay bit-identical. The exchange ends inside
// afterInnerStep(), so a snapshot is phi and momentum alone.
#pragma once

#include "optim/outer/exchange.h"
#include "optim/outer/flat_parameters.h"
#include "optim/outer/outer_optimizer.h"

namespace loom::optim::outer {

class NoLoCo final : public OuterOptimizer {
 public:
  NoLoCo(NamedTensors params, const OuterComms& comms, const OuterOptions& opts, uint64_t seed);

  void afterInnerStep(int64_t step) override;
  void finish() override {}
  NamedTensors stateTensors() override;
  void loadState(const NamedTensors& state) override;
  NamedTensors snapshotState() override { return stateTensors(); }
  const OuterStats& stats() const override { return stats_; }
  int64_t stateBytes() const override { return 4 * flat_.numel() * static_cast<int64_t>(sizeof(float)); }

 private:
  FlatParameters flat_;
  dist::Communicator* exchange_comm_;  ///< one rank per replica; nullptr on non-leaders
  OuterOptions opts_;
  uint64_t seed_;
  at::Tensor phi_;       ///< this replica's outer weights
  at::Tensor momentum_;  ///< this replica's own momentum
  at::Tensor buffer_;    ///< [phi ; theta - phi], averaged over the group
  OuterStats stats_;
  Exchange exchange_;
};

}  // namespace loom::optim::outer
