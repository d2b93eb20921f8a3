// A barrier through a c10d Store, for the moments before any communicator
// exists (rendezvous, building a Gloo group): every rank announces itself and
// waits for all, and a timeout names the ranks that never came.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace loom::dist {

/// Sets "<name>/<rank>" and waits until "<name>/0" .. "<name>/<size-1>" exist.
/// `where` describes the meeting point for the error message ("rendezvous at
/// 10.0.0.1:29500"). Throws loom::PeerLostError naming the missing ranks when
/// `timeout` passes first: they died, hang, or were started with another world.
/// Each name is single use per store.
void storeBarrier(c10d::Store& store, const std::string& name, int rank, int size, std::chrono::milliseconds timeout,
                  const std::string& where);

/// The ranks in [0, size) whose "<name>/<rank>" key is not in `store`.
std::vector<int> missingRanks(c10d::Store& store, const std::string& name, int size);

}  // namespace loom::dist
