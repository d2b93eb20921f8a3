// Joining the job this process belongs to: who it is (identity.h), where the
// ranks meet (rendezvous.h) and the communicator they talk through, on the
// backend the config asks for. loom-train and the Python extension both start
// here.
//
//   launched by                 Gloo / NCCL store at                 MPI
//   loom-launch / torchrun      MASTER_ADDR:MASTER_PORT              MPI_COMM_WORLD (needs mpirun)
//   mpirun (no MASTER_ADDR)     rank 0's host, port shared with MPI  MPI_COMM_WORLD
//   nothing (one process)       the self communicator                the self communicator
#pragma once

#include "runtime/config/options.h"
#include "runtime/dist/communicator.h"
#include "runtime/dist/identity.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>

namespace loom::dist {

struct World {
  RankIdentity identity;
  c10::intrusive_ptr<c10d::Store> store;  ///< null for a lone process
  std::unique_ptr<Communicator> comm;
};

/// Throws InputError when the job cannot be joined as configured (a backend
/// this build lacks, MPI outside mpirun, no MASTER_ADDR), PeerLostError when
/// ranks do not arrive in time.
World joinWorld(const RankIdentity& identity, const ParallelOptions& opts);

}  // namespace loom::dist
