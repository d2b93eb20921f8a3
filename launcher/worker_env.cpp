#include "launcher/worker_env.h"

#include <algorithm>
#include <map>
#include <utility>

extern char** environ;

namespace loom::launcher {
namespace {

std::string nameOf(const std::string& entry) {
  return entry.substr(0, entry.find('='));
}

}  // namespace

int defaultOmpThreads(int cores, int nproc_per_node) {
  return std::max(1, cores / std::max(1, nproc_per_node));
}

std::vector<std::string> workerEnvironment(const std::vector<std::string>& base, const WorkerIdentity& id,
                                           int omp_threads) {
  const std::vector<std::pair<std::string, std::string>> worker_vars = {
      {"RANK", std::to_string(id.rank)},
      {"LOCAL_RANK", std::to_string(id.local_rank)},
      {"WORLD_SIZE", std::to_string(id.world_size)},
      {"LOCAL_WORLD_SIZE", std::to_string(id.local_world_size)},
      {"GROUP_RANK", std::to_string(id.group_rank)},
      {"GROUP_WORLD_SIZE", std::to_string(id.group_world_size)},
      {"ROLE_NAME", "default"},
      {"ROLE_RANK", std::to_string(id.rank)},
      {"ROLE_WORLD_SIZE", std::to_string(id.world_size)},
      {"MASTER_ADDR", id.master_addr},
      {"MASTER_PORT", std::to_string(id.master_port)},
      {"TORCHELASTIC_RESTART_COUNT", std::to_string(id.restart_count)},
      {"TORCHELASTIC_MAX_RESTARTS", std::to_string(id.max_restarts)},
      {"TORCHELASTIC_RUN_ID", id.run_id},
      {"TORCHELASTIC_USE_AGENT_STORE", "True"},
      {"TORCHELASTIC_ERROR_FILE", id.error_file},
  };
  std::map<std::string, std::string> replaced(worker_vars.begin(), worker_vars.end());
  std::vector<std::string> env;
  env.reserve(base.size() + worker_vars.size() + 2);
  for (const auto& entry : base) {
    if (replaced.count(nameOf(entry)) == 0) env.push_back(entry);
  }
  for (const auto& [name, value] : worker_vars) env.push_back(name + "=" + value);
  if (!findVariable(base, "OMP_NUM_THREADS")) env.push_back("OMP_NUM_THREADS=" + std::to_string(omp_threads));
  if (!findVariable(base, "OMP_WAIT_POLICY")) env.push_back("OMP_WAIT_POLICY=PASSIVE");
  return env;
}

std::vector<std::string> currentEnvironment() {
  std::vector<std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) env.emplace_back(*entry);
  return env;
}

void setVariable(std::vector<std::string>* env, const std::string& name, const std::optional<std::string>& value) {
  env->erase(std::remove_if(env->begin(), env->end(), [&](const std::string& entry) { return nameOf(entry) == name; }),
             env->end());
  if (value) env->push_back(name + "=" + *value);
}

std::optional<std::string> findVariable(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 && entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return std::nullopt;
}

}  // namespace loom::launcher
