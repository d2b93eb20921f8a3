#include "runtime/dist/identity.h"

#include "runtime/core/error.h"

#include <cerrno>
#include <climits>
#include <optional>
#include <sstream>

namespace loom::dist {
namespace {

using Getenv = std::function<const char*(const char*)>;

// The variables one launcher sets; nullptr where it has none.
struct Source {
  const char* name;
  const char* rank;
  const char* world_size;
  const char* local_rank;
  const char* local_world_size;
  const char* node_rank;
};

constexpr Source kSources[] = {
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK"},
    {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_NODE_RANK"},
    {"mpirun", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", nullptr},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID"},
};

class EnvReader {
 public:
  EnvReader(const Getenv& getenv, std::string source) : getenv_(getenv), source_(std::move(source)) {}

  const char* raw(const char* name) const { return name != nullptr ? getenv_(name) : nullptr; }

  /// The integer value of `name`, or nullopt when unset.
  std::optional<int> integer(const char* name) const {
    const char* text = raw(name);
    if (text == nullptr) return std::nullopt;
    const std::string value(text);
    errno = 0;
    char* end = nullptr;
    const long parsed = std::strtol(value.c_str(), &end, 10);
    const bool digits_only = !value.empty() && value.find_first_not_of("+-0123456789") == std::string::npos;
    LOOM_CHECK_INPUT(
        digits_only && end != nullptr && *end == '\0' && errno == 0 && parsed >= INT_MIN && parsed <= INT_MAX, name,
        "=", value, " (set by ", source_, ") is not an integer; unset it or fix the launcher");
    return static_cast<int>(parsed);
  }

  /// The integer value of `name`, which must be set because `companion` is.
  int required(const char* name, const char* companion) const {
    const std::optional<int> value = integer(name);
    LOOM_CHECK_INPUT(value.has_value(), name, " is not set although ", companion, "=", raw(companion), " is (", source_,
                     " sets both); set it too, or unset ", companion);
    return *value;
  }

 private:
  const Getenv& getenv_;
  std::string source_;
};

void readStoreEndpoint(const EnvReader& env, RankIdentity& id) {
  if (const char* addr = env.raw("MASTER_ADDR")) id.master_addr = addr;
  if (const std::optional<int> port = env.integer("MASTER_PORT")) {
    LOOM_CHECK_INPUT(*port >= 1 && *port <= 65535, "MASTER_PORT=", *port,
                     " is not a TCP port; use 1..65535 (the port rank 0 or the launcher listens on)");
    id.master_port = *port;
  }
}

void readElasticVariables(const EnvReader& env, RankIdentity& id) {
  if (const std::optional<int> restarts = env.integer("TORCHELASTIC_RESTART_COUNT")) {
    LOOM_CHECK_INPUT(*restarts >= 0, "TORCHELASTIC_RESTART_COUNT=", *restarts, " must be >= 0");
    id.restart_count = *restarts;
  }
  if (const char* agent = env.raw("TORCHELASTIC_USE_AGENT_STORE")) {
    const std::string value(agent);
    if (value == "True" || value == "true" || value == "1") {
      id.agent_store = true;
    } else {
      LOOM_CHECK_INPUT(value == "False" || value == "false" || value == "0", "TORCHELASTIC_USE_AGENT_STORE=", value,
                       " must be True or False");
    }
  }
}

void validate(const Source& s, const RankIdentity& id) {
  LOOM_CHECK_INPUT(id.world_size >= 1, s.world_size, "=", id.world_size, " (set by ", s.name, ") must be at least 1");
  LOOM_CHECK_INPUT(id.rank >= 0 && id.rank < id.world_size, s.rank, "=", id.rank, " is outside ", s.world_size, "=",
                   id.world_size, ": ranks run from 0 to ", id.world_size - 1, " (set by ", s.name,
                   "; check the launcher's process and node counts)");
  if (id.local_world_size != -1) {
    LOOM_CHECK_INPUT(id.local_world_size >= 1 && id.local_world_size <= id.world_size, s.local_world_size, "=",
                     id.local_world_size, " must be between 1 and ", s.world_size, "=", id.world_size, " (set by ",
                     s.name, ")");
    LOOM_CHECK_INPUT(id.local_rank >= 0 && id.local_rank < id.local_world_size, s.local_rank, "=", id.local_rank,
                     " is outside ", s.local_world_size, "=", id.local_world_size, " (set by ", s.name, ")");
  } else {
    LOOM_CHECK_INPUT(id.local_rank >= 0 && id.local_rank < id.world_size, s.local_rank, "=", id.local_rank,
                     " is outside ", s.world_size, "=", id.world_size, " (set by ", s.name, ")");
  }
  LOOM_CHECK_INPUT(id.node_rank >= -1 && (id.node_rank == -1 || id.node_rank < id.world_size), s.node_rank, "=",
                   id.node_rank, " must be between 0 and ", id.world_size - 1, " (set by ", s.name, ")");
}

RankIdentity fromSource(const Source& s, const Getenv& getenv) {
  const EnvReader env(getenv, s.name);
  RankIdentity id;
  id.source = s.name;
  id.rank = *env.integer(s.rank);
  id.world_size = env.required(s.world_size, s.rank);
  const std::optional<int> local_rank = env.integer(s.local_rank);
  const std::optional<int> local_world_size = env.integer(s.local_world_size);
  const std::optional<int> node_rank = env.integer(s.node_rank);
  if (local_rank.has_value()) {
    id.local_rank = *local_rank;
    id.local_world_size = local_world_size.value_or(-1);
    id.node_rank = node_rank.value_or(-1);
  } else {  // no local information: one node
    id.local_rank = id.rank;
    id.local_world_size = local_world_size.value_or(id.world_size);
    id.node_rank = node_rank.value_or(0);
  }
  readStoreEndpoint(env, id);
  readElasticVariables(env, id);
  validate(s, id);
  return id;
}

}  // namespace

std::string RankIdentity::describe() const {
  std::ostringstream out;
  out << "rank " << rank << " of " << world_size << " (local " << local_rank << " of ";
  if (local_world_size >= 0) {
    out << local_world_size;
  } else {
    out << "?";
  }
  out << ", node ";
  if (node_rank >= 0) {
    out << node_rank;
  } else {
    out << "?";
  }
  out << ") from " << source << ", store ";
  if (master_addr.empty() && master_port < 0) {
    out << "not set";
  } else {
    out << (master_addr.empty() ? "?" : master_addr) << ":" << (master_port >= 0 ? std::to_string(master_port) : "?");
    if (agent_store) out << " (launcher's)";
  }
  out << ", restart " << restart_count;
  return out.str();
}

RankIdentity identityFromEnvironment(const std::function<const char*(const char*)>& getenv) {
  for (const Source& source : kSources) {
    if (getenv(source.rank) != nullptr) return fromSource(source, getenv);
  }
  const EnvReader env(getenv, "the environment");
  RankIdentity id;
  readStoreEndpoint(env, id);
  readElasticVariables(env, id);
  return id;
}

}  // namespace loom::dist
