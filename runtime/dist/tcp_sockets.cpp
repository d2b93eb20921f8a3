#include "runtime/dist/tcp_sockets.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace loom::dist {
namespace {

bool describe(int fd, TcpConnection* out) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  int type = 0;
  socklen_t len = sizeof(type);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  out->fd = fd;
  out->local_len = sizeof(out->local);
  out->peer_len = sizeof(out->peer);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&out->local), &out->local_len) != 0) return false;
  if (out->local.ss_family != AF_INET && out->local.ss_family != AF_INET6) return false;
  return ::getpeername(fd, reinterpret_cast<sockaddr*>(&out->peer), &out->peer_len) == 0;
}

bool same(const TcpConnection& a, const TcpConnection& b) {
  return a.fd == b.fd && a.local_len == b.local_len && a.peer_len == b.peer_len &&
         std::memcmp(&a.local, &b.local, a.local_len) == 0 && std::memcmp(&a.peer, &b.peer, a.peer_len) == 0;
}

}  // namespace

std::vector<TcpConnection> connectedTcpSockets() {
  std::vector<TcpConnection> out;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    TcpConnection c;
    if (describe(static_cast<int>(fd), &c)) out.push_back(c);
  }
  ::closedir(dir);
  return out;
}

std::vector<TcpConnection> newConnections(const std::vector<TcpConnection>& before,
                                          const std::vector<TcpConnection>& after) {
  std::vector<TcpConnection> out;
  for (const TcpConnection& c : after) {
    bool old = false;
    for (const TcpConnection& b : before) old = old || same(b, c);
    if (!old) out.push_back(c);
  }
  return out;
}

bool shutdownIfStillOpen(const TcpConnection& connection) {
  TcpConnection now;
  if (!describe(connection.fd, &now) || !same(now, connection)) return false;
  return ::shutdown(connection.fd, SHUT_RDWR) == 0;
}

}  // namespace loom::dist
