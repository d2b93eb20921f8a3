// The TCP connections a piece of code opened, found by comparing this
// process's connected sockets before and after it ran, so that they can be
// shut down later from outside the library that owns them.
//
// Gloo (the Debian build lacks the headers to reach its pairs' sockets) blocks
// a thread on a peer until the transport timeout unless the connection ends;
// close() inside Gloo does not wake its own waiters, but shutdown() does: the
// event loop reads end-of-file and fails every pending operation, here and on
// the peer. A socket is identified by its descriptor and both endpoints, and
// is shut down only if the descriptor still names the same connection, so a
// descriptor number reused for another connection is never touched.
#pragma once

#include <sys/socket.h>

#include <vector>

namespace loom::dist {

struct TcpConnection {
  int fd = -1;
  sockaddr_storage local{};
  sockaddr_storage peer{};
  socklen_t local_len = 0;
  socklen_t peer_len = 0;
};

/// This process's connected TCP sockets (IPv4 and IPv6), from /proc/self/fd.
std::vector<TcpConnection> connectedTcpSockets();

/// Those of `after` that are not in `before` (same descriptor and endpoints).
std::vector<TcpConnection> newConnections(const std::vector<TcpConnection>& before,
                                          const std::vector<TcpConnection>& after);

/// shutdown(SHUT_RDWR) on `connection` if its descriptor still names it.
/// Returns whether it did.
bool shutdownIfStillOpen(const TcpConnection& connection);

}  // namespace loom::dist
