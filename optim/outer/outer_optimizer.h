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
// Exchanges use only the exchange communicator (point-to-point,
// group_average.h), on a background thread when they overlap inner steps, so it
// must be used by nothing else. In an elastic job only each replica's leader
// exchanges and broadcasts every average to its replica (OuterComms).
#pragma once

#include "optim/adamw.h"
#include "runtime/config/options.h"
#include "runtime/dist/communicator.h"

#include <cstdint>
#include <memory>
#include <vector>

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
  /// replicas' communicator on steps where a sync starts or ends (and over the
  /// replica's members where an average is fanned out).
  virtual void afterInnerStep(int64_t step) = 0;
  /// At the end of training: waits for any exchange in flight and applies it
  /// (delayed algorithms then hold the latest average). Collective.
  virtual void finish() = 0;

  /// Outer state under stable names ("outer.global", "outer.momentum", and
  /// "outer.pending" while an average waits to be applied), fp32 flat buffers
  /// over the parameters in order. Waits for an exchange in flight first.
  virtual NamedTensors stateTensors() = 0;
  /// Restores stateTensors() or snapshotState() of an optimizer built over the
  /// same parameters and options, before the first afterInnerStep() of the
  /// resumed run. Given "outer.sent" it restarts that exchange: collective with
  /// the other replicas, which load the same step's snapshot, so the average is
  /// applied at the step it would have been without the interruption.
  virtual void loadState(const NamedTensors& state) = 0;

  /// The outer state at this step boundary for an in-memory snapshot, without
  /// waiting for an exchange in flight: "outer.global", "outer.momentum", and,
  /// while an exchange started by this optimizer has not yet been applied,
  /// "outer.sent" (this rank's contribution to it, full length, zeros outside
  /// the range) and "outer.sent_range" (int64 {begin, end}). An average loaded
  /// from a disk checkpoint and not yet applied comes back as "outer.pending"
  /// and "outer.pending_range". The tensors may be views of live buffers: they
  /// stay unchanged until the next afterInnerStep() or finish() call, and the
  /// caller copies them before then.
  virtual NamedTensors snapshotState() = 0;

  virtual const OuterStats& stats() const = 0;
  /// Bytes of outer state this rank holds.
  virtual int64_t stateBytes() const = 0;
};

/// How a rank takes part in outer exchanges. The default layout passes one
/// rank per replica in `exchange` and no fan-out. An elastic job, whose
/// replicas may have different sizes, passes `exchange` on each replica's
/// leader only (nullptr on the other members) and the replica's communicator
/// in `replica` (leader = rank 0): the leader exchanges, then broadcasts each
/// average to its replica on the thread that waits for it.
struct OuterComms {
  dist::Communicator* exchange = nullptr;  ///< one rank per replica; nullptr on non-leaders
  dist::Communicator* replica = nullptr;   ///< this rank's replica (nullptr or size 1: no fan-out)
};

/// REQUIRES: `params` are float32 CPU tensors, identical on every member of
/// every replica (the first sync assumes a common start), outliving the
/// optimizer. `comms.exchange` spans the replicas (one rank per replica),
/// outlives the optimizer and is used by nothing else. `comms.replica` may be
/// the communicator the trainer reduces gradients over: the optimizer uses it
/// only on the calling thread, inside afterInnerStep(), finish() and
/// stateTensors(), at the same point of the program on every member.
/// Non-leaders start no background work. `seed` picks NoLoCo's groups; every
/// replica passes the same. Throws InputError for invalid options or when
/// `exchange` is not set exactly on the replica's rank 0.
/// `fragment_sizes`: streaming DiLoCo cuts its fragments on these per-parameter
/// sizes instead of the parameters' element counts (FlatParameters::fragments):
/// the whole tensors' under tensor parallelism.
std::unique_ptr<OuterOptimizer> makeOuterOptimizer(NamedTensors params, const OuterComms& comms,
                                                   const OuterOptions& opts, uint64_t seed,
                                                   const std::vector<int64_t>& fragment_sizes = {});
/// The default layout: makeOuterOptimizer(params, {&comm, nullptr}, opts, seed).
std::unique_ptr<OuterOptimizer> makeOuterOptimizer(NamedTensors params, dist::Communicator& comm,
                                                   const OuterOptions& opts, uint64_t seed);

}  // namespace loom::optim::outer
