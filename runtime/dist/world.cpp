#include "runtime/dist/world.h"

#include "runtime/core/build_config.h"
#include "runtime/core/error.h"
#include "runtime/dist/gloo_communicator.h"
#include "runtime/dist/rendezvous.h"

#if LOOM_WITH_MPI
#include "runtime/dist/mpi_bootstrap.h"
#include "runtime/dist/mpi_communicator.h"
#include "runtime/dist/mpi_environment.h"
#endif
#if LOOM_WITH_NCCL
#include "runtime/dist/nccl_communicator.h"
#endif

#include <chrono>
#include <cstdlib>

namespace loom::dist {
namespace {

std::chrono::milliseconds timeoutOf(const ParallelOptions& opts) {
  return std::chrono::milliseconds(static_cast<int64_t>(opts.timeout_s * 1000.0));
}

[[maybe_unused]] bool underMpirun() {  // unused where MPI is not built in
#if LOOM_WITH_MPI
  return launchedByMpirun(::getenv);
#else
  return false;
#endif
}

// Fills in where the store lives when the launcher did not say: under mpirun,
// rank 0 picks a port and MPI tells everyone.
RankIdentity withStoreAddress(RankIdentity identity) {
  if (!identity.master_addr.empty() && identity.master_port > 0) return identity;
#if LOOM_WITH_MPI
  if (underMpirun()) {
    const std::string endpoint = mpiBootstrapEndpoint();
    const auto colon = endpoint.rfind(':');
    identity.master_addr = endpoint.substr(0, colon);
    identity.master_port = std::stoi(endpoint.substr(colon + 1));
    identity.agent_store = false;
    return identity;
  }
#endif
  LOOM_THROW(InputError, "this is ", identity.describe(),
             " but MASTER_ADDR/MASTER_PORT are not set, so the ranks cannot meet: start the job with loom-launch "
             "(or torchrun, or mpirun), or export MASTER_ADDR and MASTER_PORT on every rank");
}

}  // namespace

World joinWorld(const RankIdentity& identity, const ParallelOptions& opts) {
  World world;
  world.identity = identity;
  const CommunicatorOptions comm_opts{timeoutOf(opts)};
  if (identity.world_size == 1) {
    world.comm = makeSelfCommunicator(comm_opts);
    return world;
  }
  if (opts.backend == CommBackend::kMpi) {
#if LOOM_WITH_MPI
    LOOM_CHECK_INPUT(underMpirun(), "parallel.backend is MPI but this process was not started by mpirun (",
                     identity.describe(), "): launch with mpirun -np N, or use parallel.backend: GLOO");
#endif
  }
  world.identity = withStoreAddress(identity);
  RendezvousOptions rendezvous;
  rendezvous.timeout = comm_opts.timeout;
  world.store = connectStore(world.identity, rendezvous);
  switch (opts.backend) {
    case CommBackend::kGloo: {
      GlooOptions gloo;
      gloo.comm = comm_opts;
      world.comm = makeGlooCommunicator(world.store, world.identity.rank, world.identity.world_size, gloo);
      break;
    }
    case CommBackend::kMpi:
#if LOOM_WITH_MPI
      world.comm = makeMpiCommunicator(comm_opts, world.store);
      break;
#else
      LOOM_THROW(InputError, "parallel.backend (MPI) is not built into this loom: rebuild with -DLOOM_WITH_MPI=ON");
#endif
    case CommBackend::kNccl:
#if LOOM_WITH_NCCL
      world.comm = makeNcclCommunicator(world.store, world.identity.rank, world.identity.world_size,
                                        world.identity.local_rank, comm_opts);
      break;
#else
      LOOM_THROW(InputError, "parallel.backend (NCCL) is not built into this loom: rebuild with -DLOOM_WITH_NCCL=ON");
#endif
  }
  return world;
}

}  // namespace loom::dist
