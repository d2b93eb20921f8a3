#include "tests/runtime/dist/mpi_test_util.h"

#include "runtime/dist/mpi_communicator.h"

namespace loom::dist::test {

std::unique_ptr<Communicator> worldCommunicator() {
  CommunicatorOptions opts;
  opts.timeout = kTestTimeout;
  return makeMpiCommunicator(opts);
}

}  // namespace loom::dist::test
