// The environment each worker starts with: the launcher's own, plus torchrun's
// worker variables (ecosystem.md §1.2) so that code written for torchrun, and
// loom's rank identity (runtime/dist), find their rank without flags.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace loom::launcher {

struct WorkerIdentity {
  int rank = 0;
  int local_rank = 0;
  int world_size = 1;
  int local_world_size = 1;
  int group_rank = 0;  ///< this node's index in the job (0..nnodes-1)
  int group_world_size = 1;
  int restart_count = 0;
  int max_restarts = 0;
  std::string run_id;
  std::string master_addr;  ///< the launcher-hosted store workers connect to
  int master_port = 0;
  std::string error_file;  ///< TORCHELASTIC_ERROR_FILE
};

/// OMP_NUM_THREADS for workers when the user set none: cores / nproc, at least 1.
int defaultOmpThreads(int cores, int nproc_per_node);

/// `base` ("NAME=value" entries, e.g. from environ) with the worker variables set:
/// RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE,
/// ROLE_RANK, ROLE_WORLD_SIZE, ROLE_NAME, MASTER_ADDR, MASTER_PORT,
/// TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS, TORCHELASTIC_RUN_ID,
/// TORCHELASTIC_USE_AGENT_STORE=True and TORCHELASTIC_ERROR_FILE (any values in
/// `base` replaced); OMP_NUM_THREADS=`omp_threads` and OMP_WAIT_POLICY=PASSIVE
/// only where `base` has none (runtime/core/thread_env.h explains PASSIVE).
std::vector<std::string> workerEnvironment(const std::vector<std::string>& base, const WorkerIdentity& id,
                                           int omp_threads);

/// This process's environment as "NAME=value" entries.
std::vector<std::string> currentEnvironment();

/// Sets `name` to `value` in `env` (replacing any entry), or removes it when `value` is nullopt.
void setVariable(std::vector<std::string>* env, const std::string& name, const std::optional<std::string>& value);

/// The value of `name` in `env`, nullopt when unset.
std::optional<std::string> findVariable(const std::vector<std::string>& env, const std::string& name);

}  // namespace loom::launcher
