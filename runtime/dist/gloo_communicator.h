// The Gloo backend of the Communicator (ARCHITECTURE.md §2): CPU tensors over
// TCP, through libtorch's c10d ProcessGroupGloo. The default backend on CPU.
//
// Per operation:
//   allReduce      c10d allreduce; kAvg = sum, then divide by size() on completion
//                  (integers: truncating division); bfloat16 is reduced as a float32 copy
//                  (1.13's Gloo does not reduce bfloat16), so it moves twice the bytes counted.
//   broadcast      c10d broadcast; allGather: c10d allgather into views of `output`.
//   reduceScatter  a ring on Gloo's own transport (GlooGroup::reduceScatterRing).
//   send/recv      c10d send/recv; the tag must be >= 0.
//   barrier        c10d barrier (waits for this rank's earlier operations too).
// Any dtype moves (bytes travel as a same-width integer type); reductions take
// float32/64, float16, bfloat16, int8, uint8, int32 and int64. Non-contiguous
// tensors are staged through a contiguous copy. Empty tensors complete at once
// on every rank without touching the network.
//
// Timeouts: waits honour the per-operation timeout exactly. Gloo's own transport
// timeout (GlooOptions::transport_timeout) only bounds how long Gloo's threads
// stay blocked on a silent peer; once it fires Gloo closes the group's
// connections and the communicator is unusable, like after abort().
//
// abort(): pending and later waits throw PeerLostError at once, and send/recv
// waits are released. A collective that Gloo's worker thread is executing
// cannot be interrupted: it ends when the peers it waits for close their
// connections (they die, or their operation fails and they destroy the
// communicator) or at the transport timeout. The destructor waits for that, so
// no Gloo thread outlives the communicator (elastic/elastic_world.h keeps
// aborted communicators alive instead of waiting).
//
// A process with SIGPIPE at its default action gets it ignored by the first
// communicator: a write to a peer that went away must fail, not kill the rank.
#pragma once

#include "runtime/dist/communicator.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace loom::dist {

struct GlooOptions {
  CommunicatorOptions comm;
  /// Network interfaces to use, comma-separated ("eth0" or "eth0,eth1"). Empty:
  /// $LOOM_GLOO_IFNAME, else $GLOO_SOCKET_IFNAME, else `hostname`.
  std::string interface;
  /// When no interface is named: the address or host name other ranks reach this
  /// one on ("127.0.0.1" for single-host jobs). Empty: c10d's default, this
  /// machine's host name if it resolves, else loopback.
  std::string hostname;
  /// Gloo's per-wait timeout on its own threads. Zero: 5/4 of comm.timeout, so
  /// loom's timeout fires first. Make it at least the longest per-operation
  /// timeout you pass, or Gloo fails that operation earlier.
  std::chrono::milliseconds transport_timeout{0};
  /// How long construction waits for every rank to arrive. Zero: comm.timeout.
  std::chrono::milliseconds connect_timeout{0};
};

/// Builds a Gloo communicator of `size` ranks over `store` (private to this
/// communicator, e.g. a PrefixStore; every rank passes the same one). Blocks
/// until all ranks have called it and are connected to each other. Throws
/// InputError for a bad interface or host name, PeerLostError naming the ranks
/// that did not arrive within opts.connect_timeout (default opts.comm.timeout).
std::unique_ptr<Communicator> makeGlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                   const GlooOptions& opts = {});

}  // namespace loom::dist
