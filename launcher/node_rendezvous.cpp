#include "launcher/node_rendezvous.h"

#include "launcher/store_ops.h"
#include "runtime/core/error.h"
#include "runtime/dist/tcp_store.h"

#include <unistd.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <sstream>

namespace loom::launcher {
namespace {

using nlohmann::json;

constexpr const char* kJoined = "joined";
constexpr const char* kClosed = "closed";

std::string nodeKey(int node_rank) {
  return "node/" + std::to_string(node_rank);
}

std::string seconds(std::chrono::milliseconds ms) {
  std::ostringstream out;
  out << static_cast<double>(ms.count()) / 1000.0 << " s";
  return out.str();
}

struct Registration {
  int node_rank = 0;
  json record;
};

// Registrations in join order; a node that counted itself in but has not
// written its entry yet is waited for briefly, then left out.
std::vector<Registration> readJoined(c10d::Store& store, const std::function<void()>& check_interrupt) {
  std::vector<Registration> joined;
  const int64_t count = readCounter(store, kJoined);
  for (int64_t i = 0; i < count; ++i) {
    const std::string key = std::string(kJoined) + "/" + std::to_string(i);
    if (!pollUntil(
            Clock::now() + std::chrono::seconds(2), [&] { return store.check({key}); }, check_interrupt)) {
      continue;
    }
    Registration r;
    r.node_rank = std::stoi(getText(store, key));
    r.record = json::parse(getText(store, nodeKey(r.node_rank)));
    joined.push_back(std::move(r));
  }
  return joined;
}

std::string describeNodes(const std::vector<Registration>& nodes) {
  std::string text;
  for (const auto& n : nodes) {
    text += (text.empty() ? "" : ", ") + std::to_string(n.node_rank) + " on " + n.record["host"].get<std::string>();
  }
  return text.empty() ? "none" : text;
}

std::string timeoutMessage(const LaunchOptions& opts, const std::vector<Registration>& joined) {
  std::vector<bool> present(static_cast<size_t>(opts.max_nodes), false);
  for (const auto& r : joined) present[static_cast<size_t>(r.node_rank)] = true;
  std::string missing;
  for (int k = 0; k < opts.max_nodes; ++k) {
    if (!present[static_cast<size_t>(k)]) missing += (missing.empty() ? "" : ", ") + std::to_string(k);
  }
  std::ostringstream out;
  out << "rendezvous of run '" << opts.run_id << "' at " << opts.rdzv_endpoint.str() << " timed out after "
      << seconds(opts.rdzv_timeout) << ": " << joined.size() << " of the " << opts.min_nodes
      << " required node(s) joined (node ranks " << describeNodes(joined)
      << "); node ranks that did not join: " << missing << ". Start loom-launch --nnodes " << opts.min_nodes << ":"
      << opts.max_nodes << " --node-rank K --rdzv-endpoint HOST:PORT --rdzv-id " << opts.run_id
      << " on the missing nodes (every launcher needs node 0's endpoint and the same --rdzv-id), or raise "
         "--rdzv-timeout";
  return out.str();
}

std::string makeNonce(const std::string& host) {
  std::random_device device;
  return host + ":" + std::to_string(::getpid()) + ":" + std::to_string(device());
}

void publishClosed(c10d::Store& store, const std::vector<Registration>& members, const std::string& error,
                   const std::string& error_kind) {
  json closed = {{"node_ranks", json::array()}, {"hosts", json::array()}, {"error", error}, {"error_kind", error_kind}};
  for (const auto& m : members) {
    closed["node_ranks"].push_back(m.node_rank);
    closed["hosts"].push_back(m.record["host"]);
  }
  setText(store, kClosed, closed.dump());
}

// Node 0: waits for MIN nodes (then the last call, up to MAX), picks the
// members, checks that they agree on the per-node settings, and closes.
void closeRendezvous(c10d::Store& store, const LaunchOptions& opts, const std::function<void()>& check_interrupt,
                     const LaunchLog& log) {
  const auto deadline = Clock::now() + opts.rdzv_timeout;
  std::optional<Clock::time_point> last_call_end;
  const bool full = pollUntil(
      deadline,
      [&] {
        const int64_t n = readCounter(store, kJoined);
        if (n >= opts.max_nodes) return true;
        if (n < opts.min_nodes) return false;
        if (!last_call_end) {
          last_call_end = Clock::now() + opts.last_call;
          log.info(n, " of up to ", opts.max_nodes, " nodes joined (minimum ", opts.min_nodes, "): admitting more for ",
                   seconds(opts.last_call), " (last call)");
        }
        return Clock::now() >= *last_call_end;
      },
      check_interrupt);
  std::vector<Registration> joined = readJoined(store, check_interrupt);
  if (!full && static_cast<int>(joined.size()) < opts.min_nodes) {
    const std::string message = timeoutMessage(opts, joined);
    publishClosed(store, {}, message, "timeout");
    LOOM_THROW(PeerLostError, message);
  }
  // Node 0 first, then the others in join order, at most MAX.
  std::stable_partition(joined.begin(), joined.end(), [](const Registration& r) { return r.node_rank == 0; });
  if (static_cast<int>(joined.size()) > opts.max_nodes) joined.resize(static_cast<size_t>(opts.max_nodes));
  std::sort(joined.begin(), joined.end(), [](const auto& a, const auto& b) { return a.node_rank < b.node_rank; });
  for (const auto& m : joined) {
    const int nproc = m.record["nproc"].get<int>();
    const int restarts = m.record["max_restarts"].get<int>();
    if (nproc != opts.nproc_per_node || restarts != opts.max_restarts) {
      std::ostringstream message;
      message << "node " << m.node_rank << " on " << m.record["host"].get<std::string>() << " runs --nproc-per-node "
              << nproc << " --max-restarts " << restarts << " but node 0 runs --nproc-per-node " << opts.nproc_per_node
              << " --max-restarts " << opts.max_restarts << ": every launcher of a job needs the same values";
      publishClosed(store, {}, message.str(), "input");
      LOOM_THROW(InputError, message.str());
    }
  }
  publishClosed(store, joined, "", "");
}

}  // namespace

LaunchStore openLaunchStore(const LaunchOptions& opts, const LaunchLog& log) {
  const Endpoint& endpoint = opts.rdzv_endpoint;
  c10d::TCPStoreOptions store_opts;
  store_opts.port = static_cast<std::uint16_t>(endpoint.port);
  store_opts.isServer = opts.hostsStore();
  store_opts.waitWorkers = false;
  // c10d's connect loop counts whole seconds: below 1 s it gives up before trying.
  store_opts.timeout = std::max<std::chrono::milliseconds>(std::chrono::ceil<std::chrono::seconds>(opts.rdzv_timeout),
                                                           std::chrono::seconds(1));
  c10::intrusive_ptr<c10d::TCPStore> tcp_store;
  try {
    tcp_store = dist::makeTcpStore(endpoint.host, store_opts);
  } catch (const std::exception& e) {
    if (opts.hostsStore()) {
      LOOM_THROW(InputError, "cannot host the rendezvous store on port ", endpoint.port, " (--rdzv-endpoint ",
                 endpoint.str(), "): ", errorMessage(e),
                 " Another job or a leftover launcher may hold the port: pick another port, or on a single node "
                 "omit --rdzv-endpoint to get a free one");
    }
    LOOM_THROW(InputError, "cannot reach the rendezvous store at ", endpoint.str(), " (--rdzv-endpoint) within ",
               seconds(opts.rdzv_timeout), ": ", errorMessage(e), " Check that loom-launch --node-rank 0 runs on ",
               endpoint.host, " with --rdzv-endpoint ", endpoint.str(), ", that ", endpoint.host,
               " resolves and is reachable from this machine, and that no firewall blocks port ", endpoint.port);
  }
  LaunchStore result{tcp_store, endpoint};
  if (opts.hostsStore()) {
    result.endpoint.port = tcp_store->getPort();
    log.info("rendezvous store listening on ", result.endpoint.str(), " (run id ", opts.run_id, ")");
    if (opts.multiNode()) {
      const std::string nnodes = opts.min_nodes == opts.max_nodes
                                     ? std::to_string(opts.max_nodes)
                                     : std::to_string(opts.min_nodes) + ":" + std::to_string(opts.max_nodes);
      log.info("other nodes join with: loom-launch --nnodes ", nnodes, " --nproc-per-node ", opts.nproc_per_node,
               " --node-rank K --rdzv-endpoint ", result.endpoint.str(), " --rdzv-id ", opts.run_id, " -- ...");
    }
  }
  return result;
}

Membership joinRendezvous(c10d::Store& store, const LaunchOptions& opts, const std::string& host,
                          const std::function<void()>& check_interrupt, const LaunchLog& log) {
  const json mine = {
      {"host", host}, {"nonce", makeNonce(host)}, {"nproc", opts.nproc_per_node}, {"max_restarts", opts.max_restarts}};
  const std::string winner = setTextIfAbsent(store, nodeKey(opts.node_rank), mine.dump());
  if (winner != mine.dump()) {
    LOOM_THROW(InputError, "--node-rank ", opts.node_rank, " of run '", opts.run_id,
               "' is already taken by the launcher on ", json::parse(winner)["host"].get<std::string>(),
               ": give every launcher of the job its own --node-rank in [0, ", opts.max_nodes, ")");
  }
  const int64_t index = store.add(kJoined, 1) - 1;
  setText(store, std::string(kJoined) + "/" + std::to_string(index), std::to_string(opts.node_rank));

  if (opts.hostsStore()) {
    closeRendezvous(store, opts, check_interrupt, log);
  } else if (!pollUntil(
                 Clock::now() + opts.rdzv_timeout, [&] { return store.check({kClosed}); }, check_interrupt)) {
    LOOM_THROW(PeerLostError, timeoutMessage(opts, readJoined(store, check_interrupt)));
  }
  const json closed = json::parse(getText(store, kClosed));
  const std::string error = closed["error"].get<std::string>();
  if (!error.empty()) {
    if (closed["error_kind"] == "timeout") LOOM_THROW(PeerLostError, error);
    LOOM_THROW(InputError, error);
  }
  Membership m;
  m.node_ranks = closed["node_ranks"].get<std::vector<int>>();
  m.hosts = closed["hosts"].get<std::vector<std::string>>();
  m.group_world_size = static_cast<int>(m.node_ranks.size());
  const auto self = std::find(m.node_ranks.begin(), m.node_ranks.end(), opts.node_rank);
  if (self == m.node_ranks.end()) {
    std::string members;
    for (int r : m.node_ranks) members += (members.empty() ? "" : ", ") + std::to_string(r);
    LOOM_THROW(InputError, "the rendezvous of run '", opts.run_id, "' closed without node ", opts.node_rank,
               ": the job already has node ranks ", members, " (--nnodes ", opts.min_nodes, ":", opts.max_nodes,
               " admits at most ", opts.max_nodes, " nodes, and only until the last-call window ends)");
  }
  m.group_rank = static_cast<int>(self - m.node_ranks.begin());
  std::string members;
  for (size_t i = 0; i < m.node_ranks.size(); ++i) {
    members += (i == 0 ? "" : ", ") + std::to_string(m.node_ranks[i]) + " on " + m.hosts[i];
  }
  log.info("rendezvous complete: ", m.group_world_size, " node(s) [", members, "]; this node is group rank ",
           m.group_rank, ", world size ", m.group_world_size * opts.nproc_per_node);
  return m;
}

}  // namespace loom::launcher
