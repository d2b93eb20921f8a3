#include "runtime/dist/mpi_bootstrap.h"

#include "runtime/core/error.h"
#include "runtime/core/unique_fd.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/dist/mpi_environment.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace loom::dist {
namespace {

// Room for "host:port" or "!reason"; longer reasons are cut.
constexpr int kMessageBytes = 512;

// The IPv4 address of the interface `wanted` (or of the first up, non-loopback one when empty).
std::string interfaceAddress(const std::string& wanted) {
  ifaddrs* list = nullptr;
  LOOM_CHECK(::getifaddrs(&list) == 0, describeErrno("getifaddrs", errno));
  std::unique_ptr<ifaddrs, void (*)(ifaddrs*)> owner(list, ::freeifaddrs);
  for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    const bool chosen =
        wanted.empty() ? (it->ifa_flags & IFF_UP) && !(it->ifa_flags & IFF_LOOPBACK) : wanted == it->ifa_name;
    if (!chosen) continue;
    std::array<char, INET_ADDRSTRLEN> text{};
    const auto* address = reinterpret_cast<const sockaddr_in*>(it->ifa_addr);
    LOOM_CHECK(::inet_ntop(AF_INET, &address->sin_addr, text.data(), text.size()) != nullptr,
               describeErrno("inet_ntop", errno));
    return text.data();
  }
  LOOM_CHECK(wanted.empty(), "GLOO_SOCKET_IFNAME=", wanted, " names no interface with an IPv4 address on rank 0");
  LOOM_THROW(c10::Error, "rank 0 has no network interface that is up, has an IPv4 address and is not loopback; set ",
             "GLOO_SOCKET_IFNAME to the interface the ranks share");
}

// A TCP port that is free now: bind port 0 and read back what the kernel chose.
int freeTcpPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM, 0));
  LOOM_CHECK(fd.valid(), describeErrno("socket", errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = 0;
  LOOM_CHECK(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0,
             describeErrno("bind to port 0", errno));
  socklen_t length = sizeof(address);
  LOOM_CHECK(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0,
             describeErrno("getsockname", errno));
  return ntohs(address.sin_port);
}

// Whether every rank runs on the node of rank 0.
bool allOnRankZeroNode() {
  std::array<char, MPI_MAX_PROCESSOR_NAME + 1> mine{};
  std::array<char, MPI_MAX_PROCESSOR_NAME + 1> zeros{};
  int length = 0;
  LOOM_MPI_CHECK(MPI_Get_processor_name(mine.data(), &length), "name of this node");
  zeros = mine;
  LOOM_MPI_CHECK(MPI_Bcast(zeros.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD),
                 "broadcasting rank 0's node name");
  int same = std::strcmp(mine.data(), zeros.data()) == 0 ? 1 : 0;
  LOOM_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD),
                 "checking whether all ranks share rank 0's node");
  return same != 0;
}

}  // namespace

std::string mpiBootstrapEndpoint() {
  const MpiEnvironment& environment = MpiEnvironment::instance();
  const bool local = allOnRankZeroNode();
  std::array<char, kMessageBytes> message{};
  if (environment.worldRank() == 0) {
    std::string text;
    try {
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      const std::string host = local ? "127.0.0.1" : interfaceAddress(ifname != nullptr ? ifname : "");
      text = host + ":" + std::to_string(freeTcpPort());
    } catch (const std::exception& e) {
      // The others are about to wait in MPI_Bcast: tell them why instead of leaving them hanging.
      text = "!" + errorMessage(e);
    }
    std::strncpy(message.data(), text.c_str(), message.size() - 1);
  }
  LOOM_MPI_CHECK(MPI_Bcast(message.data(), kMessageBytes, MPI_CHAR, 0, MPI_COMM_WORLD),
                 "broadcasting the rendezvous endpoint from rank 0");
  const std::string endpoint(message.data());
  LOOM_CHECK(endpoint.empty() || endpoint[0] != '!',
             "mpi bootstrap: rank 0 could not choose a rendezvous endpoint: ", endpoint.substr(1));
  return endpoint;
}

}  // namespace loom::dist
