#include "launcher/launch_options.h"

#include "runtime/core/error.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>

namespace loom::launcher {
namespace {

bool parseInt(const std::string& text, long long* value) {
  if (text.empty()) return false;
  size_t used = 0;
  try {
    *value = std::stoll(text, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == text.size();
}

std::string secondsText(std::chrono::milliseconds ms) {
  std::ostringstream out;
  out << static_cast<double>(ms.count()) / 1000.0 << " s";
  return out.str();
}

std::string randomRunId() {
  std::random_device device;
  char text[33];
  for (int i = 0; i < 32; i += 8) {
    std::snprintf(text + i, 9, "%08x", static_cast<unsigned>(device()));
  }
  return text;
}

}  // namespace

std::string Endpoint::str() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

void parseNnodes(const std::string& text, int* min_nodes, int* max_nodes) {
  const size_t colon = text.find(':');
  long long lo = 0;
  long long hi = 0;
  bool ok = false;
  if (colon == std::string::npos) {
    ok = parseInt(text, &lo);
    hi = lo;
  } else {
    ok = parseInt(text.substr(0, colon), &lo) && parseInt(text.substr(colon + 1), &hi);
  }
  LOOM_CHECK_INPUT(ok && lo > 0 && lo <= hi && hi <= 65536, "--nnodes \"", text,
                   "\" is not N or MIN:MAX with 0 < MIN <= MAX (e.g. --nnodes 2 or --nnodes 2:4)");
  *min_nodes = static_cast<int>(lo);
  *max_nodes = static_cast<int>(hi);
}

int parseNprocPerNode(const std::string& text, int cores) {
  if (text == "auto" || text == "cpu") return cores;
  LOOM_CHECK_INPUT(text != "gpu" && text != "xpu", "--nproc-per-node ", text,
                   ": loom-launch does not count accelerators; give the number of workers per node");
  long long n = 0;
  LOOM_CHECK_INPUT(parseInt(text, &n) && n > 0 && n <= 4096, "--nproc-per-node \"", text,
                   "\" must be a positive integer, \"auto\" or \"cpu\" (= ", cores, " cores here)");
  return static_cast<int>(n);
}

Endpoint parseEndpoint(const std::string& text) {
  Endpoint endpoint;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    LOOM_CHECK_INPUT(close != std::string::npos, "--rdzv-endpoint \"", text, "\": missing ']' after an IPv6 address");
    endpoint.host = text.substr(1, close - 1);
    const std::string rest = text.substr(close + 1);
    LOOM_CHECK_INPUT(rest.empty() || rest.front() == ':', "--rdzv-endpoint \"", text, "\": expected [IPv6]:PORT");
    port_text = rest.empty() ? "" : rest.substr(1);
  } else {
    const size_t colon = text.rfind(':');
    const bool bare_ipv6 = colon != std::string::npos && text.find(':') != colon;
    LOOM_CHECK_INPUT(!bare_ipv6, "--rdzv-endpoint \"", text, "\": write an IPv6 address as [ADDRESS]:PORT");
    endpoint.host = text.substr(0, colon);
    port_text = colon == std::string::npos ? "" : text.substr(colon + 1);
  }
  LOOM_CHECK_INPUT(!endpoint.host.empty(), "--rdzv-endpoint \"", text, "\" has no host; expected HOST[:PORT]");
  long long port = kDefaultRendezvousPort;
  LOOM_CHECK_INPUT(port_text.empty() || (parseInt(port_text, &port) && port >= 0 && port <= 65535),
                   "--rdzv-endpoint \"", text, "\": port \"", port_text, "\" is not a number in 0..65535");
  endpoint.port = static_cast<int>(port);
  return endpoint;
}

std::chrono::milliseconds parseSeconds(const std::string& text, const std::string& flag) {
  size_t used = 0;
  double seconds = -1;
  try {
    seconds = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LOOM_CHECK_INPUT(used == text.size() && !text.empty() && std::isfinite(seconds) && seconds >= 0 && seconds < 1e8,
                   flag, " \"", text, "\" must be a number of seconds >= 0 (e.g. 0.5 or 30)");
  return std::chrono::milliseconds(static_cast<long long>(std::llround(seconds * 1000.0)));
}

void applyRendezvousConf(const std::string& text, LaunchOptions* opts) {
  std::istringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    LOOM_CHECK_INPUT(eq != std::string::npos, "--rdzv-conf item \"", item, "\" is not KEY=VALUE");
    const std::string value = item.substr(eq + 1);
    if (key == "join_timeout") {
      opts->rdzv_timeout = parseSeconds(value, "--rdzv-conf join_timeout");
    } else if (key == "last_call_timeout") {
      opts->last_call = parseSeconds(value, "--rdzv-conf last_call_timeout");
    } else {
      LOOM_THROW(InputError, "--rdzv-conf key \"", key,
                 "\" is not supported; loom-launch knows join_timeout and last_call_timeout (seconds)");
    }
  }
}

void finalizeLaunchOptions(LaunchOptions* opts) {
  LOOM_CHECK_INPUT(!opts->program.empty(), "no program to launch: loom-launch [options] [--] program [args...]");
  LOOM_CHECK_INPUT(opts->max_restarts >= 0, "--max-restarts ", opts->max_restarts, " must be >= 0");
  LOOM_CHECK_INPUT(opts->monitor_interval.count() > 0, "--monitor-interval must be > 0 s (default 0.1)");
  LOOM_CHECK_INPUT(opts->rdzv_timeout.count() > 0, "--rdzv-timeout must be > 0 s (default 600)");
  LOOM_CHECK_INPUT(!opts->tee || !opts->log_dir.empty(),
                   "--tee copies worker output to the console while --log-dir keeps it in files: give --log-dir DIR "
                   "too (without --log-dir the output already goes to the console)");
  LOOM_CHECK_INPUT(opts->node_rank >= 0 && opts->node_rank < opts->max_nodes, "--node-rank ", opts->node_rank,
                   " must be in [0, ", opts->max_nodes, ") for --nnodes ", opts->min_nodes, ":", opts->max_nodes);
  if (opts->standalone) {
    LOOM_CHECK_INPUT(!opts->multiNode(), "--standalone is a single-node job but --nnodes allows ", opts->max_nodes,
                     " nodes; drop one of them");
    LOOM_CHECK_INPUT(!opts->rdzv_endpoint_given,
                     "--standalone picks a free local port itself; drop --rdzv-endpoint or --standalone");
    opts->run_id = randomRunId();
  }
  if (opts->multiNode()) {
    LOOM_CHECK_INPUT(opts->rdzv_endpoint_given, "--nnodes ", opts->min_nodes, ":", opts->max_nodes,
                     " needs --rdzv-endpoint HOST:PORT: where the launcher with --node-rank 0 hosts the store");
    LOOM_CHECK_INPUT(opts->hostsStore() || opts->rdzv_endpoint.port != 0, "--rdzv-endpoint ", opts->rdzv_endpoint.str(),
                     ": port 0 only works on node 0 (which picks and prints a free port); "
                     "node ",
                     opts->node_rank, " needs the port node 0 printed");
  }
}

std::string describeLaunchOptions(const LaunchOptions& opts) {
  std::ostringstream out;
  std::string entrypoint = opts.program;
  for (const auto& arg : opts.args) entrypoint += " " + arg;
  std::string endpoint = opts.rdzv_endpoint.str();
  if (opts.rdzv_endpoint.port == 0) endpoint += " (a free port, printed when bound)";
  out << "Starting loom-launch with launch configs:\n"
      << "  entrypoint       : " << entrypoint << "\n"
      << "  min_nodes        : " << opts.min_nodes << "\n"
      << "  max_nodes        : " << opts.max_nodes << "\n"
      << "  node_rank        : " << opts.node_rank << (opts.hostsStore() ? " (hosts the store)" : "") << "\n"
      << "  nproc_per_node   : " << opts.nproc_per_node << "\n"
      << "  run_id           : " << opts.run_id << "\n"
      << "  rdzv_endpoint    : " << endpoint << "\n"
      << "  rdzv_configs     : {'join_timeout': " << secondsText(opts.rdzv_timeout)
      << ", 'last_call_timeout': " << secondsText(opts.last_call) << "}\n"
      << "  max_restarts     : " << opts.max_restarts << "\n"
      << "  monitor_interval : " << secondsText(opts.monitor_interval) << "\n"
      << "  grace_period     : " << secondsText(opts.grace_period) << "\n"
      << "  log_dir          : " << (opts.log_dir.empty() ? "<none: console only>" : opts.log_dir) << "\n"
      << "  tee              : " << (opts.tee ? "on (console and files)" : "off") << "\n";
  return out.str();
}

int usableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return 1;
}

}  // namespace loom::launcher
