// Outer optimizers: how replicas that train on their own agree
// (ARCHITECTURE.md §2 "Optimizers", ../shared/reference/optimizers.md, docs/outer.md).
//
// A replica steps its inner optimizer every step on its own batch and calls
// afterInnerStep(t) after inner step t (1, 2, ...). Every sync_every steps the
// outer optimizer makes the replicas agree, changing the parameters in place:
//   DiLoCo  pseudo-gradient D = global - local, averaged over all replicas, one
//           Nesterov-SGD step on the global weights, which become the replica's
//           weights. Streaming: P fragments, one every sync_every / P steps, its
//           exchange overlapping `fragment_delay` inner steps, local progress
//           kept with weight `fragment_alpha`. Delayed (async DiLoCo): round r's
//           average is exchanged while round r + 1 computes and applied at its end.
//   NoLoCo  no collective: each replica averages with the other members of a
//           group drawn from the step number, then heavy-ball momentum plus a
//           consensus pull towards the group mean; momentum is never shared.
//   CO2     delayed exchange like async DiLoCo with heavy-ball momentum, outer
//           gradients divided by the staleness penalty and momentum clamped.
// Inner optimizer state is never read, written or sent. Outer state is fp32.
// Exchanges use only `comm` (point-to-point, group_average.h), on a background
// thread when they overlap inner steps, so `comm` must be used by nothing else.
#pragma once

#include "optim/adamw.h"
#include "runtime/config/options.h"
#include "runtime/dist/communicator.h"

#include <cstdint>
#include <memory>

namespace loom::optim::outer {

/// Cumulative figures since construction.
struct OuterStats {
  int64_t syncs = 0;      ///< completed outer steps (a streaming fragment's counts as one)
  double comm_ms = 0;     ///< time exchanges were in flight
  double exposed_ms = 0;  ///< time afterInnerStep()/finish() waited for an exchange
};

class OuterOptimizer {
 public:
  virtual ~OuterOptimizer() = default;

  /// After inner step `step` (1-based, consecutive). Collective over the
  /// replicas' communicator on steps where a sync starts or ends.
  virtual void afterInnerStep(int64_t step) = 0;
  /// At the end of training: waits for any exchange in flight and applies it
  /// (delayed algorithms then hold the latest average). Collective.
  virtual void finish() = 0;

  /// Outer state under stable names ("outer.global", "outer.momentum", and
  /// "outer.pending" while an average waits to be applied), fp32 flat buffers
  /// over the parameters in order. Waits for an exchange in flight first.
  virtual NamedTensors stateTensors() = 0;
  /// Restores stateTensors() of an optimizer built over the same parameters and
  /// options, before the first afterInnerStep() of the resumed run.
  virtual void loadState(const NamedTensors& state) = 0;

  virtual const OuterStats& stats() const = 0;
  /// Bytes of outer state this rank holds.
  virtual int64_t stateBytes() const = 0;
};

/// REQUIRES: `params` are float32 CPU tensors, identical on every replica (the
/// first sync assumes a common start), outliving the optimizer; `comm` spans
/// the replicas (one rank per replica), outlives the optimizer and is used by
/// nothing else. `seed` picks NoLoCo's groups; every replica passes the same.
/// Throws InputError for options that do not fit comm.size() (group_size).
std::unique_ptr<OuterOptimizer> makeOuterOptimizer(NamedTensors params, dist::Communicator& comm,
                                                   const OuterOptions& opts, uint64_t seed);

}  // namespace loom::optim::outer
