// loom_dist_worker: one rank of a multi-process test. Reads its identity from
// the launcher's variables, meets the others at the store, all-reduces
// (rank + 1) over 1000 doubles with Gloo and checks the sum, then prints
//   "rank R of N: allReduce ok (sum S)".
// Failures exit with loom's codes (2 bad input, 3 peer lost).
#include "runtime/core/cli_main.h"
#include "runtime/core/error.h"
#include "runtime/dist/gloo_communicator.h"
#include "runtime/dist/identity.h"
#include "runtime/dist/rendezvous.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <iostream>

int main(int argc, char** argv) {
  CLI::App app("One rank of loom's multi-process communication tests", "loom_dist_worker");
  int timeout_ms = 30000;
  app.add_option("--timeout-ms", timeout_ms, "rendezvous and operation timeout")->check(CLI::PositiveNumber);
  return loom::runCliMain(app, argc, argv, [&] {
    using namespace loom::dist;
    const RankIdentity id = identityFromEnvironment();
    std::cout << id.describe() << std::endl;
    const std::chrono::milliseconds timeout(timeout_ms);
    auto store = connectStore(id, {timeout, "loom"});
    GlooOptions opts;
    opts.hostname = "127.0.0.1";
    opts.comm.timeout = timeout;
    auto comm = makeGlooCommunicator(store, id.rank, id.world_size, opts);
    at::Tensor t = at::full({1000}, id.rank + 1.0, at::kDouble);
    comm->allReduce(t, ReduceOp::kSum)->wait();
    const double expected = id.world_size * (id.world_size + 1) / 2.0;
    LOOM_CHECK(at::equal(t, at::full({1000}, expected, at::kDouble)), "allReduce gave ", t[0].item<double>(),
               ", expected ", expected);
    comm->barrier();
    std::cout << "rank " << id.rank << " of " << id.world_size << ": allReduce ok (sum " << expected << ")"
              << std::endl;
    return 0;
  });
}
