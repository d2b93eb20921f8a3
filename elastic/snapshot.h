// Per-step in-memory snapshots of a rank's state, verified by per-tensor
// checksums and replicated to a buddy rank (ARCHITECTURE.md §2 "Elastic";
// parallel_elastic.md §4.1 "Snapshots", §4.7 step 4, §6 test 19).
//
// After each committed step a rank captures its state (parameters, optimizer
// moments, step, data cursor, RNG state) into a SnapshotStore and sends the
// snapshot to its buddy, (rank + 1) % world, which keeps it in its own buddy
// SnapshotStore. When a rank dies, the survivor that held its snapshot restores
// the lost state from memory (restoreFromBuddy) instead of from disk.
//
// Memory: a snapshot keeps all its tensors in one byte buffer (each tensor a
// 64-byte-aligned view into it), so capturing a state of unchanged shapes again
// allocates nothing, and a snapshot travels as one message. A store holds two
// buffers (twice the state's bytes); so does a buddy store.
//
// Errors: bad arguments throw loom::InputError; a snapshot whose bytes no longer
// match its checksums (memory or transport corruption, or a bug) throws
// c10::Error, loom's internal error, naming the first corrupt tensor; a lost
// peer during replication throws loom::PeerLostError (from Work::wait()).
#pragma once

#include "elastic/tensor_checksum.h"
#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace loom::elastic {

/// What a rank captures at a step boundary. The tensors are handles on the live
/// state: capture() copies their values and keeps no reference to them.
struct RankState {
  int rank = 0;             ///< the rank whose state this is
  NamedTensors tensors;     ///< CPU tensors of any dtype and shape (contiguous or not), unique names
  int64_t data_cursor = 0;  ///< where the data loader resumes
  at::Tensor rng_state;     ///< uint8 CPU bytes (at::Generator::get_state()); undefined when there is none
};

/// An owned deep copy of one rank's state at one step, with the checksums
/// computed while capturing it. Read-only for its users (write through a
/// SnapshotStore). Not thread-safe: one owner at a time.
class Snapshot {
 public:
  Snapshot() = default;
  Snapshot(Snapshot&&) noexcept = default;
  Snapshot& operator=(Snapshot&&) noexcept = default;
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  /// False while empty or after a failed write.
  bool complete() const { return complete_; }
  int rank() const { return rank_; }
  int64_t step() const { return step_; }
  int64_t dataCursor() const { return data_cursor_; }
  /// Views into this snapshot's buffer, valid until the next write into it.
  /// Do not write through them (verify() would report it).
  const NamedTensors& tensors() const { return tensors_; }
  /// 1-D uint8; empty when the state had none.
  const at::Tensor& rngState() const { return rng_state_; }
  /// tensorChecksum() of each of tensors(), in order, as captured.
  const std::vector<uint64_t>& checksums() const { return checksums_; }
  uint64_t rngChecksum() const { return rng_checksum_; }
  /// One checksum over rank, step, data cursor, names, checksums() and
  /// rngChecksum(): equal on two snapshots of the same state (no rehashing).
  uint64_t checksum() const;
  /// Bytes of the tensors and RNG state (with alignment padding), and of the buffer holding them.
  int64_t bytes() const { return used_bytes_; }
  int64_t capacityBytes() const { return arena_.defined() ? arena_.numel() : 0; }

  /// Recomputes every checksum. Throws c10::Error naming the first tensor whose
  /// bytes changed since capture ("... tensor 'w' (Float [4, 4]): checksum 0x..
  /// != 0x.. recorded at capture"), or when the snapshot is not complete().
  void verify() const;

  /// Copies the snapshot's tensors into `live` (the same names in the same
  /// order, same dtypes and shapes; any device). Throws InputError on a mismatch,
  /// before copying anything.
  void restoreInto(const NamedTensors& live) const;

 private:
  friend class SnapshotStore;
  friend struct SnapshotAccess;  // the wire format, in snapshot.cpp

  struct TensorSpec {
    std::string name;
    at::ScalarType dtype;
    std::vector<int64_t> sizes;
  };
  /// Marks the snapshot incomplete and lays out `specs` and `rng_bytes` in the
  /// buffer, growing it only when they do not fit.
  void layOut(int rank, int64_t step, int64_t data_cursor, const std::vector<TensorSpec>& specs, int64_t rng_bytes);
  void fillFrom(int64_t step, const RankState& state);

  bool complete_ = false;
  int rank_ = -1;
  int64_t step_ = -1;
  int64_t data_cursor_ = 0;
  at::Tensor arena_;  ///< uint8, capacityBytes() long
  int64_t used_bytes_ = 0;
  NamedTensors tensors_;
  at::Tensor rng_state_;
  std::vector<uint64_t> checksums_;
  uint64_t rng_checksum_ = 0;
};

/// Two snapshot buffers with commit semantics: a write goes into the spare
/// buffer and becomes latest() only once it completed, so a failure midway
/// (an invalid tensor, a lost peer, a checksum mismatch) leaves the last complete
/// snapshot in place. Buffers are reused: after the first two writes, writes of
/// unchanged shapes allocate nothing. Not thread-safe; latest() stays valid
/// until the second write after it.
class SnapshotStore {
 public:
  /// Deep-copies `state` into the spare buffer with checksums, then makes it
  /// latest(). Throws InputError for an undefined, non-CPU (checked tensor by
  /// tensor while copying) or duplicately named tensor, or an RNG state that is
  /// not uint8; latest() is then unchanged.
  const Snapshot& capture(int64_t step, const RankState& state);

  /// The commit primitive behind capture() and replication: runs fill(spare);
  /// when it returns, spare becomes latest(). When it throws, the exception
  /// propagates and latest() is unchanged.
  const Snapshot& write(const std::function<void(Snapshot& spare)>& fill);

  bool hasSnapshot() const { return latest_ >= 0; }
  /// The last complete snapshot. Throws InputError when there is none.
  const Snapshot& latest() const;
  /// The complete snapshot of `step` (latest() or the one before it); null when
  /// neither is of that step.
  const Snapshot* at(int64_t step) const;
  /// Steps of the complete snapshots held, newest first (-1 for none).
  std::array<int64_t, 2> steps() const;

 private:
  std::array<Snapshot, 2> buffers_;
  int latest_ = -1;
};

/// The rank that holds `rank`'s snapshot: the next one on the ring.
int buddyOf(int rank, int world_size);
/// The rank whose snapshot `rank` holds: the previous one on the ring.
int buddySourceOf(int rank, int world_size);

/// Tags [kSnapshotTagBase, kSnapshotTagBase + 3) carry replication (within
/// MPI's guaranteed tag bound, 32767).
constexpr int kSnapshotTagBase = 30000;

struct ReplicationOptions {
  int tag_base = kSnapshotTagBase;
  dist::OpOptions op;  ///< timeouts of the sends and receives
  /// Test hook: sees the received bytes before they are verified (to corrupt them).
  std::function<void(at::Tensor& received_bytes)> on_received;
};

/// Every rank of `comm` calls this at the same point: sends `mine` to
/// buddyOf(rank) and receives buddySourceOf(rank)'s snapshot into `buddy_store`
/// (committed only once all its checksums verify). Three messages per direction:
/// a size, a header (names, dtypes, shapes, step, cursor, checksums; itself
/// checksummed), and the snapshot's bytes. Receives are posted before sends.
///
/// REQUIRES: comm.size() >= 2; `mine` is complete() and not written during the
/// call; no other code uses `comm`'s tags in [tag_base, tag_base + 3) meanwhile:
/// run it on a communicator nobody else uses concurrently, e.g. from a
/// background thread on a private comm.split() of the world.
/// Throws PeerLostError when a peer is lost, c10::Error when the received
/// snapshot fails verification; buddy_store.latest() is then unchanged. After a
/// checksum mismatch in the bytes every message has completed and `comm` stays
/// usable; after any other failure its messages are out of step: abort it.
void replicateToBuddy(dist::Communicator& comm, const Snapshot& mine, SnapshotStore& buddy_store,
                      const ReplicationOptions& opts = {});

/// The held copy of `rank`'s snapshot from a buddy store, verified again.
/// Throws InputError when the store holds none or holds another rank's, and
/// c10::Error when it fails verification.
const Snapshot& restoreFromBuddy(const SnapshotStore& buddy_store, int rank);

}  // namespace loom::elastic
