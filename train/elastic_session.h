// The trainer's side of elastic training (docs/elastic.md "Recovery"): per-step
// in-memory snapshots of what a rank needs to continue, the optimizer shard's
// copy on the buddy rank, and rebuilding the training state over a new
// membership generation from them.
//
// After each committed step the rank captures two snapshots (elastic/snapshot.h,
// double-buffered, checksummed): its parameters (with the data cursor and RNG
// state) and its optimizer state (ZeRO-1: its shard). With ZeRO-1 the shard is
// the only state no other rank has, so a background thread sends it to the
// buddy, the next rank on the ring, over the generation's replication
// communicator while the next step computes; the step waits for that copy
// before its commit vote, so a step commits only once every shard of the
// previous one has two holders. Replicated AdamW needs no copy: every rank
// holds the full state.
//
// restore() runs on every member after a generation change (recovery or
// admission). The members agree on the newest step T that every needed state
// is held at (a survivor can be one step ahead of another when a failure
// split the commit vote; it then rolls back using its older buffer), and
// rebuild from T: parameters and RNG from each survivor's own snapshot (joiners
// receive the lowest surviving rank's of their replica by broadcast); with
// replicated AdamW the optimizer (and outer optimizer) state likewise; with
// ZeRO-1 the optimizer state from
// the holders of every old shard, one broadcast per shard, reassembled for the
// new world. A shard whose rank and buddy were both lost cannot be rebuilt:
// restore() throws UnrecoverableStateError and the job stops with its last
// durable checkpoint intact.
#pragma once

#include "elastic/elastic_world.h"
#include "elastic/snapshot.h"
#include "runtime/core/logging.h"
#include "runtime/core/named_tensors.h"

#include <ATen/core/Tensor.h>

#include <atomic>
#include <future>
#include <stdexcept>

namespace loom::train {

/// Handles on a rank's live training state (captureCommitted copies them).
struct LiveState {
  NamedTensors params;     ///< the model's parameters
  NamedTensors optimizer;  ///< ParameterOptimizer::localState()
  int64_t data_cursor = 0;
  at::Tensor rng_state;  ///< uint8 bytes of the trainer's generator
};

/// The state of step `step`, owned, ready to load into a rebuilt trainer.
struct RestoredState {
  int64_t step = 0;
  NamedTensors params;     ///< parameter values, in the model's order
  NamedTensors optimizer;  ///< the full optimizer state (world-size independent)
  at::Tensor rng_state;
  int64_t data_cursor = 0;
  /// Checksum of the parameters and the full optimizer state, equal on every
  /// member (restore() checks it before anyone trains on the state).
  uint64_t state_hash = 0;
};

/// Both holders of a shard were lost, or no consistent step exists.
class UnrecoverableStateError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ElasticSession {
 public:
  ElasticSession(elastic::ElasticWorld& world, bool sharded, const Logger& log);
  /// Waits for a replication in flight (it fails fast once the world aborted).
  ~ElasticSession();
  ElasticSession(const ElasticSession&) = delete;
  ElasticSession& operator=(const ElasticSession&) = delete;

  /// After step `step` committed: snapshots `live` and, when sharded, copies
  /// the optimizer shard to the buddy, both on a background thread. REQUIRES:
  /// nothing writes the tensors of `live` until awaitReplication() returned.
  void captureCommitted(int64_t step, const LiveState& live);
  /// Waits for the snapshot and copy started by the last captureCommitted().
  /// Throws PeerLostError when a peer was lost, c10::Error when a received copy
  /// fails its checksums.
  void awaitReplication();
  /// Collective over world.main() after a generation change; `params` gives
  /// the parameter names and shapes; `replica` spans the members that hold the
  /// same state (world.main() without an outer optimizer, else this rank's
  /// replica), among which joiners receive it and the state must agree.
  /// Throws UnrecoverableStateError.
  RestoredState restore(const elastic::GenerationChange& change, const NamedTensors& params,
                        dist::Communicator& replica);

  /// Milliseconds the last completed capture took (on its background thread).
  double lastCaptureMs() const { return last_capture_ms_.load(); }

 private:
  /// Hashes the restored parameters and optimizer state and checks that every
  /// rank of `comm` holds the same (a joiner's state equals the others' before
  /// its first step). Throws c10::Error naming the rank that differs.
  void checkAgreement(RestoredState& restored, dist::Communicator& comm);

  elastic::ElasticWorld& world_;
  bool sharded_;
  const Logger& log_;
  elastic::SnapshotStore params_;  ///< own parameters, data cursor, RNG
  elastic::SnapshotStore shard_;   ///< own optimizer state (the shard when sharded)
  elastic::SnapshotStore buddy_;   ///< the previous rank's shard (sharded only)
  std::future<void> replication_;
  std::atomic<double> last_capture_ms_{0};
};

}  // namespace loom::train
