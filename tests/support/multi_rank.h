// The multi-rank fixture: N ranks as threads of the test process, each with its
// own Gloo communicator over one in-memory store (aesthetics §8.5).
#pragma once

#include "runtime/dist/communicator.h"
#include "runtime/dist/gloo_communicator.h"

#include <functional>

namespace loom::test {

/// Loopback (127.0.0.1) and a 30 s operation timeout: a rank stuck by a bug
/// fails its test in seconds instead of hanging it for the 10-minute default.
dist::GlooOptions testGlooOptions();

/// Runs body(rank, communicator) on `world_size` threads, each with its own
/// Gloo communicator over one HashStore. When a rank throws, the other ranks'
/// communicators are aborted so their pending waits fail at once; after every
/// thread has ended, the first exception is rethrown with its rank added
/// ("on rank 2"). Communicators are destroyed on their threads, when the body returns.
void runRanks(int world_size, const std::function<void(int rank, dist::Communicator& comm)>& body,
              const dist::GlooOptions& opts = testGlooOptions());

}  // namespace loom::test
