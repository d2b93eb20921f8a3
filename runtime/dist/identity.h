// Who this process is in the job, read from the variables its launcher set
// (ecosystem.md §1.2, §2.1, §2.5).
//
// Precedence, first match wins (a source is present when its rank variable is set):
//   torchrun / loom-launch  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
//                           TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_USE_AGENT_STORE
//   mpirun (Open MPI)       OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE,NODE_RANK}
//   mpirun (MPICH, Intel)   PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS
//   slurm (srun)            SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE,
//                           SLURM_NODEID
//   single process          rank 0 of 1
// MASTER_ADDR / MASTER_PORT are read whatever the source. When a source gives
// no local rank, one node is assumed (local rank = rank); a local world size or
// node rank it does not give is -1.
#pragma once

#include <cstdlib>
#include <functional>
#include <string>

namespace loom::dist {

struct RankIdentity {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;               ///< -1: the launcher did not say
  int node_rank = 0;                      ///< -1: the launcher did not say
  std::string source = "single process";  ///< "torchrun", "mpirun", "slurm", "single process"
  std::string master_addr;                ///< empty: not set
  int master_port = -1;                   ///< -1: not set
  bool agent_store = false;               ///< TORCHELASTIC_USE_AGENT_STORE=True: the launcher hosts the store
  int restart_count = 0;                  ///< TORCHELASTIC_RESTART_COUNT

  /// "rank 1 of 4 (local 1 of 2, node 0) from torchrun, store 10.0.0.1:29500, restart 0"
  std::string describe() const;
};

/// Reads the identity through `getenv` (injectable for tests).
/// Throws InputError naming the variable and its value when one is malformed
/// ("RANK=abc") or the values disagree ("RANK=5" with "WORLD_SIZE=4").
RankIdentity identityFromEnvironment(const std::function<const char*(const char*)>& getenv = ::getenv);

}  // namespace loom::dist
