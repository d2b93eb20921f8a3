#include "launcher/launch_cli.h"

#include "runtime/core/error.h"

#include <CLI/CLI.hpp>

namespace loom::launcher {
namespace {

// "--nproc-per-node" -> "--nproc-per-node,--nproc_per_node", PET_NPROC_PER_NODE.
std::string spellings(const std::string& dashed) {
  std::string underscored = dashed;
  for (size_t i = 2; i < underscored.size(); ++i) {
    if (underscored[i] == '-') underscored[i] = '_';
  }
  return underscored == dashed ? dashed : dashed + "," + underscored;
}

std::string envName(const std::string& dashed) {
  std::string name = "PET_";
  for (size_t i = 2; i < dashed.size(); ++i) {
    name += dashed[i] == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(dashed[i])));
  }
  return name;
}

template <typename T>
void addOption(CLI::App& app, const std::string& flag, T* value, const std::string& help) {
  app.add_option(spellings(flag), *value, help)->envname(envName(flag));
}

void addFlag(CLI::App& app, const std::string& names, const std::string& flag, bool* value, const std::string& help) {
  app.add_flag(names, *value, help)->envname(envName(flag));
}

}  // namespace

void addLaunchFlags(CLI::App& app, LaunchFlags* flags) {
  addOption(app, "--nproc-per-node", &flags->nproc_per_node, "workers on this node: N, auto or cpu (= cores)");
  addOption(app, "--nnodes", &flags->nnodes, "nodes in the job: N or MIN:MAX");
  addOption(app, "--node-rank", &flags->node_rank, "this node's rank; node 0 hosts the rendezvous store");
  addOption(app, "--rdzv-endpoint", &flags->rdzv_endpoint,
            "HOST[:PORT] of node 0's store (default: 127.0.0.1 and a free port on one node)");
  addOption(app, "--rdzv-id", &flags->rdzv_id, "job id shared by all nodes (TORCHELASTIC_RUN_ID)");
  addOption(app, "--rdzv-conf", &flags->rdzv_conf, "join_timeout=S,last_call_timeout=S");
  addOption(app, "--rdzv-timeout", &flags->rdzv_timeout, "seconds to wait for nodes to join (default 600)");
  addFlag(app, "--standalone", "--standalone", &flags->standalone, "single node, free port, random run id");
  addOption(app, "--max-restarts", &flags->max_restarts, "worker-group restarts before giving up (default 0)");
  addOption(app, "--monitor-interval", &flags->monitor_interval, "seconds between checks of the job state");
  addOption(app, "--log-dir", &flags->log_dir, "write worker output to files under this directory");
  addFlag(app, "--tee,-t", "--tee", &flags->tee, "with --log-dir: also show worker output on the console");
  addOption(app, "--grace-period", &flags->grace_period, "seconds from SIGTERM to SIGKILL when stopping workers");
  app.prefix_command();
}

LaunchOptions resolveLaunchOptions(const LaunchFlags& flags, const std::vector<std::string>& remaining) {
  LaunchOptions opts;
  size_t first = 0;
  if (!remaining.empty() && remaining.front() == "--") {
    first = 1;
  } else if (!remaining.empty() && remaining.front().size() > 1 && remaining.front()[0] == '-') {
    LOOM_THROW(InputError, "unknown option ", remaining.front(),
               " (see loom-launch --help; put the program after -- if its name starts with '-')");
  }
  if (first < remaining.size()) {
    opts.program = remaining[first];
    opts.args.assign(remaining.begin() + static_cast<std::ptrdiff_t>(first) + 1, remaining.end());
  }
  const bool torchrun_tee_value =
      flags.tee && (opts.program == "0" || opts.program == "1" || opts.program == "2" || opts.program == "3");
  LOOM_CHECK_INPUT(!torchrun_tee_value, "--tee is a switch in loom-launch (torchrun's --tee ", opts.program,
                   " is loom's --tee with --log-dir): drop the ", opts.program);
  opts.nproc_per_node = parseNprocPerNode(flags.nproc_per_node, usableCores());
  parseNnodes(flags.nnodes, &opts.min_nodes, &opts.max_nodes);
  opts.node_rank = flags.node_rank;
  if (!flags.rdzv_endpoint.empty()) {
    opts.rdzv_endpoint = parseEndpoint(flags.rdzv_endpoint);
    opts.rdzv_endpoint_given = true;
  }
  opts.run_id = flags.rdzv_id;
  LOOM_CHECK_INPUT(!opts.run_id.empty() && opts.run_id.find('/') == std::string::npos, "--rdzv-id \"", opts.run_id,
                   "\" must be non-empty and contain no '/'");
  applyRendezvousConf(flags.rdzv_conf, &opts);
  if (!flags.rdzv_timeout.empty()) opts.rdzv_timeout = parseSeconds(flags.rdzv_timeout, "--rdzv-timeout");
  opts.standalone = flags.standalone;
  opts.max_restarts = flags.max_restarts;
  opts.monitor_interval = parseSeconds(flags.monitor_interval, "--monitor-interval");
  opts.log_dir = flags.log_dir;
  opts.tee = flags.tee;
  opts.grace_period = parseSeconds(flags.grace_period, "--grace-period");
  finalizeLaunchOptions(&opts);
  return opts;
}

}  // namespace loom::launcher
