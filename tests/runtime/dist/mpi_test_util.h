// Shared by loom's MPI tests, which run as one program on every rank under mpirun.
#pragma once

#include "runtime/dist/communicator.h"
#include "tests/runtime/dist/mpi_test_patterns.h"

#include <chrono>
#include <memory>

namespace loom::dist::test {

/// Bounds every operation, so a rank that diverges makes the others fail
/// within seconds instead of hanging the whole mpirun.
inline constexpr std::chrono::milliseconds kTestTimeout{30000};

/// A communicator over every rank of the job, with kTestTimeout.
std::unique_ptr<Communicator> worldCommunicator();

}  // namespace loom::dist::test
