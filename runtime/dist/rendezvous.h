// Rendezvous: every rank of a job reaches one c10d TCPStore (ARCHITECTURE.md §2).
//
// Rank 0 hosts the store at MASTER_ADDR:MASTER_PORT unless the launcher already
// does (TORCHELASTIC_USE_AGENT_STORE=True); every other rank connects to it.
// The store handed back is a PrefixStore "<prefix>/<restart_count>", so a
// launcher-hosted store serves each restart with fresh keys. connectStore()
// returns once all world_size ranks have arrived.
//
// Failures and their types (the exit code tells a launcher whether to retry):
//   bad endpoint: the host does not resolve, nothing answers at host:port within
//     the timeout, or rank 0's port is taken -> InputError: restarting with the
//     same MASTER_ADDR/MASTER_PORT fails the same way (torchrun, too, treats a
//     timed-out rendezvous as not retryable);
//   the store is reachable but ranks never arrive -> PeerLostError naming them:
//     those processes died or hang, which a restart can fix.
#pragma once

#include "runtime/dist/identity.h"

#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <string>

namespace loom::dist {

struct RendezvousOptions {
  /// Connecting, and waiting for all ranks (c10d's store default).
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  /// Namespace of this job's keys in the store.
  std::string prefix = "loom";
};

/// Connects this rank to the job's store and waits for every rank (see above).
/// A single-process identity without MASTER_PORT gets an in-memory store.
c10::intrusive_ptr<c10d::Store> connectStore(const RankIdentity& identity, const RendezvousOptions& opts = {});

/// Hosts a store server on `port` of every interface (what rank 0 or the
/// launcher runs); `host` is where this process's own client reaches it. Port 0
/// picks a free port: read it back with getPort(). Throws InputError when the
/// port is taken.
c10::intrusive_ptr<c10d::TCPStore> hostStore(const std::string& host, int port, int world_size,
                                             std::chrono::milliseconds timeout);

/// Connects a client to the store at host:port. Throws InputError naming the
/// endpoint and what to check when the host does not resolve or nothing
/// answers within `timeout`.
c10::intrusive_ptr<c10d::TCPStore> joinStore(const std::string& host, int port, std::chrono::milliseconds timeout);

}  // namespace loom::dist
