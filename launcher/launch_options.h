// What one loom-launch invocation was asked to do, resolved and validated.
//
// The flags mirror torchrun's (docs/launcher.md, ecosystem.md §1.1); the
// parsers below turn their text forms into values and throw InputError naming
// the flag, the value and the accepted forms. Defaults are the in-class
// initialisers, repeated in docs/launcher.md.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace loom::launcher {

/// torchrun's default c10d rendezvous port, used when --rdzv-endpoint names no port.
constexpr int kDefaultRendezvousPort = 29400;

struct Endpoint {
  std::string host;
  int port = 0;  ///< 0 on node 0: bind a free port and print it

  std::string str() const;
};

struct LaunchOptions {
  int nproc_per_node = 1;
  int min_nodes = 1;
  int max_nodes = 1;
  int node_rank = 0;
  Endpoint rdzv_endpoint{"127.0.0.1", 0};
  bool rdzv_endpoint_given = false;  ///< false: single node on a free loopback port
  std::string run_id = "none";
  bool standalone = false;
  int max_restarts = 0;
  std::chrono::milliseconds monitor_interval{100};
  std::string log_dir;  ///< empty: worker output goes to the console only
  bool tee = false;     ///< with log_dir: also echo worker output to the console
  std::chrono::milliseconds grace_period{30000};
  std::chrono::milliseconds rdzv_timeout{600000};
  /// After --nnodes MIN joined and while fewer than MAX did, wait this long for more.
  std::chrono::milliseconds last_call{30000};
  std::string program;            ///< the worker executable as given
  std::vector<std::string> args;  ///< its arguments

  bool multiNode() const { return max_nodes > 1; }
  bool hostsStore() const { return node_rank == 0; }
  bool consoleOutput() const { return log_dir.empty() || tee; }
};

/// "N" or "MIN:MAX" with 0 < MIN <= MAX (torchrun's --nnodes). Writes both bounds.
void parseNnodes(const std::string& text, int* min_nodes, int* max_nodes);

/// A positive integer, or "auto"/"cpu": `cores`.
int parseNprocPerNode(const std::string& text, int cores);

/// "HOST[:PORT]" or "[IPv6]:PORT"; a missing port is kDefaultRendezvousPort.
Endpoint parseEndpoint(const std::string& text);

/// Seconds as a decimal (e.g. "0.1", "30"), >= 0; `flag` names it in errors.
std::chrono::milliseconds parseSeconds(const std::string& text, const std::string& flag);

/// torchrun's --rdzv-conf "k1=v1,k2=v2": join_timeout and last_call_timeout (seconds).
void applyRendezvousConf(const std::string& text, LaunchOptions* opts);

/// Cross-flag checks and the --standalone / single-node resolution. Throws InputError.
void finalizeLaunchOptions(LaunchOptions* opts);

/// The "Starting loom-launch with launch configs" block printed once at start.
std::string describeLaunchOptions(const LaunchOptions& opts);

/// CPUs this process may run on (sched_getaffinity), at least 1.
int usableCores();

}  // namespace loom::launcher
