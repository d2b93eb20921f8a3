// Rendezvous for jobs that mpirun starts but that communicate over Gloo:
// MPI tells every rank where rank 0 listens, so no MASTER_ADDR is needed.
#pragma once

#include "runtime/core/build_config.h"

#if LOOM_WITH_MPI

#include <string>

namespace loom::dist {

/// "host:port" where rank 0 of MPI_COMM_WORLD can host the rendezvous store
/// (c10d::TCPStore), identical on every rank. Collective over MPI_COMM_WORLD:
/// every rank calls it, from one thread; initialises MPI through MpiEnvironment.
///
/// host: 127.0.0.1 when every rank runs on rank 0's node; otherwise the IPv4
/// address of rank 0's interface named by GLOO_SOCKET_IFNAME, or else of its
/// first interface that is up and not loopback. port: one the kernel reported
/// free on rank 0; another process could take it before the store binds it
/// (unlikely: the kernel hands out ephemeral ports in turn).
///
/// Throws c10::Error on every rank when rank 0 cannot find an address or port
/// (with rank 0's reason), or when MPI fails.
std::string mpiBootstrapEndpoint();

}  // namespace loom::dist

#endif  // LOOM_WITH_MPI
