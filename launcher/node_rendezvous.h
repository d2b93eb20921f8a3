// How launchers find each other and agree on one job.
//
// The launcher with --node-rank 0 hosts a c10d TCPStore (its workers and every
// other node's workers use the same store: TORCHELASTIC_USE_AGENT_STORE=True);
// the others connect to it at --rdzv-endpoint. Membership is then agreed through
// the store, under a prefix per run id:
//   node/<node_rank>   registration {host, nonce, nproc, max_restarts}; a second
//                      launcher with the same --node-rank is refused;
//   joined, joined/<i> join order;
//   closed             written once by node 0: the member node ranks, or an error.
// Node 0 closes the rendezvous when MAX nodes joined, or when MIN joined and the
// last-call window (--rdzv-conf last_call_timeout) passed without reaching MAX;
// later arrivals are refused. Group ranks follow --node-rank order, so with
// --nnodes N and node ranks 0..N-1, GROUP_RANK = --node-rank.
#pragma once

#include "launcher/launch_log.h"
#include "launcher/launch_options.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <functional>
#include <string>
#include <vector>

namespace loom::launcher {

struct LaunchStore {
  c10::intrusive_ptr<c10d::Store> store;  ///< the TCPStore itself (workers' keys live here too)
  Endpoint endpoint;                      ///< where it listens (the bound port on node 0)
};

/// Node 0: hosts the store at --rdzv-endpoint's port (0: a free one) and logs
/// "rendezvous store listening on HOST:PORT". Other nodes: connect, retrying up
/// to --rdzv-timeout. Throws InputError naming HOST:PORT and what to check when
/// the port is taken or the endpoint cannot be reached.
LaunchStore openLaunchStore(const LaunchOptions& opts, const LaunchLog& log);

struct Membership {
  int group_rank = 0;
  int group_world_size = 1;
  std::vector<int> node_ranks;     ///< --node-rank of each member, by group rank
  std::vector<std::string> hosts;  ///< host of each member, by group rank
};

/// Registers this node in `store` (already prefixed per run) and waits until
/// node 0 closes the rendezvous. Throws PeerLostError naming the node ranks that
/// did not join within --rdzv-timeout, InputError for a duplicate --node-rank, a
/// mismatched --nproc-per-node / --max-restarts, or a node refused after closing.
/// `check_interrupt` runs while waiting and may throw to abandon the wait.
Membership joinRendezvous(c10d::Store& store, const LaunchOptions& opts, const std::string& host,
                          const std::function<void()>& check_interrupt, const LaunchLog& log);

}  // namespace loom::launcher
