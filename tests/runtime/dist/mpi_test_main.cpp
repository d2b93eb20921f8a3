// main() of the MPI tests: one GoogleTest program on every rank of an mpirun
// job. Every rank runs every test in the same order (the tests are collective);
// rank 0 prints the usual report and the others only their failures, prefixed
// with their rank. The job fails when any rank failed.
#include "runtime/dist/mpi_environment.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const loom::dist::MpiEnvironment& environment = loom::dist::MpiEnvironment::instance();
  const int rank = environment.worldRank();
  if (environment.worldSize() < 2) {
    std::fprintf(stderr, "the MPI tests need several ranks: run them as mpirun -np N %s (N >= 2)\n", argv[0]);
    return 1;
  }
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0 && failed > 0) {
    std::fprintf(stderr, "%d of %d ranks failed (their failures are printed above, prefixed [rank r])\n", failed,
                 environment.worldSize());
  }
  return failed > 0 ? 1 : 0;
}
