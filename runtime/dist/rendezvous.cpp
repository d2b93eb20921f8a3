#include "runtime/dist/rendezvous.h"

#include "runtime/core/error.h"
#include "runtime/dist/store_barrier.h"
#include "runtime/dist/tcp_store.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <netdb.h>
#include <sys/socket.h>
#include <algorithm>
#include <chrono>

namespace loom::dist {
namespace {

constexpr const char* kEndpointHint =
    "Check that rank 0 (or loom-launch) is running and listening there, that MASTER_ADDR/MASTER_PORT "
    "(loom-launch --rdzv-endpoint HOST:PORT) name its host and port, and that no firewall blocks the port";

std::string endpoint(const std::string& host, int port) {
  return host + ":" + std::to_string(port);
}

void checkResolves(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (found != nullptr) ::freeaddrinfo(found);
  LOOM_CHECK_INPUT(rc == 0, "rendezvous: the store host '", host, "' (", endpoint(host, port),
                   ") does not resolve: ", ::gai_strerror(rc), ". Set MASTER_ADDR (loom-launch --rdzv-endpoint) to ",
                   "a name or address of rank 0's host");
}

// c10d's connect loop counts whole seconds: below 1 s it gives up before trying.
std::chrono::milliseconds storeTimeout(std::chrono::milliseconds timeout) {
  return std::max<std::chrono::milliseconds>(std::chrono::ceil<std::chrono::seconds>(timeout), std::chrono::seconds(1));
}

void checkPort(int port, bool server) {
  LOOM_CHECK_INPUT(port >= (server ? 0 : 1) && port <= 65535, "rendezvous: store port ", port,
                   " is not a TCP port (MASTER_PORT must be 1..65535)");
}

}  // namespace

c10::intrusive_ptr<c10d::TCPStore> hostStore(const std::string& host, int port, int world_size,
                                             std::chrono::milliseconds timeout) {
  checkPort(port, /*server=*/true);
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(port);
  opts.isServer = true;
  opts.numWorkers = static_cast<size_t>(world_size);
  opts.waitWorkers = false;  // storeBarrier() waits, and names who is missing
  opts.timeout = storeTimeout(timeout);
  try {
    return makeTcpStore(host, opts);
  } catch (const std::exception& e) {
    const std::string message = errorMessage(e);
    if (message.find("Address already in use") != std::string::npos) {
      LOOM_THROW(InputError, "rendezvous: cannot host the store on port ", port,
                 ": the port is already in use on this host (another job, or one still shutting down). Choose "
                 "another MASTER_PORT (loom-launch --rdzv-endpoint HOST:PORT), or let loom-launch pick a free port");
    }
    LOOM_THROW(InputError, "rendezvous: cannot host the store on port ", port, ": ", message);
  }
}

c10::intrusive_ptr<c10d::TCPStore> joinStore(const std::string& host, int port, std::chrono::milliseconds timeout) {
  checkPort(port, /*server=*/false);
  checkResolves(host, port);
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(port);
  opts.isServer = false;
  opts.waitWorkers = false;
  opts.timeout = storeTimeout(timeout);
  try {
    return makeTcpStore(host, opts);
  } catch (const std::exception& e) {
    LOOM_THROW(InputError, "rendezvous: could not reach the store at ", endpoint(host, port), " within ",
               timeout.count(), " ms: ", errorMessage(e), " ", kEndpointHint);
  }
}

c10::intrusive_ptr<c10d::Store> connectStore(const RankIdentity& identity, const RendezvousOptions& opts) {
  LOOM_CHECK_INPUT(opts.timeout.count() > 0, "rendezvous: the timeout must be positive, got ", opts.timeout.count(),
                   " ms");
  c10::intrusive_ptr<c10d::Store> base;
  std::string where;
  if (identity.world_size == 1 && identity.master_port < 0) {
    base = c10::make_intrusive<c10d::HashStore>();
    where = "rendezvous in memory";
  } else {
    LOOM_CHECK_INPUT(!identity.master_addr.empty() && identity.master_port > 0, "rendezvous: ", identity.describe(),
                     " has no store endpoint: set MASTER_ADDR and MASTER_PORT to rank 0's host and a free port "
                     "(loom-launch and torchrun set them; with mpirun add -x MASTER_ADDR -x MASTER_PORT)");
    const bool server = identity.rank == 0 && !identity.agent_store;
    if (server) {
      base = hostStore(identity.master_addr, identity.master_port, identity.world_size, opts.timeout);
    } else {
      base = joinStore(identity.master_addr, identity.master_port, opts.timeout);
    }
    where = "rendezvous at " + endpoint(identity.master_addr, identity.master_port);
  }
  const std::string prefix = opts.prefix + "/" + std::to_string(identity.restart_count);
  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, base);
  storeBarrier(*store, "arrived", identity.rank, identity.world_size, opts.timeout, where);
  return store;
}

}  // namespace loom::dist
