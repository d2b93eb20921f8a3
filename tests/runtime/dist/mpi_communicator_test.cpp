// Behaviour of the MPI communicator beyond single collectives: sub-groups,
// timeouts that name the missing rank, abort, and overlap with computation.
#include "runtime/dist/mpi_communicator.h"
#include "runtime/core/error.h"
#include "runtime/dist/mpi_bootstrap.h"
#include "runtime/dist/tcp_store.h"
#include "tests/runtime/dist/mpi_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>

namespace loom::dist::test {
namespace {

using ::testing::HasSubstr;

std::vector<int> rankRange(int begin, int end) {
  std::vector<int> ranks(end - begin);
  std::iota(ranks.begin(), ranks.end(), begin);
  return ranks;
}

// A TCPStore hosted by rank 0 at the endpoint MPI agreed on.
c10::intrusive_ptr<c10d::Store> storeAtBootstrapEndpoint(int rank, int size) {
  const std::string endpoint = mpiBootstrapEndpoint();
  const size_t colon = endpoint.rfind(':');
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1)));
  opts.isServer = rank == 0;
  opts.numWorkers = size;
  opts.waitWorkers = false;
  opts.timeout = kTestTimeout;
  return makeTcpStore(endpoint.substr(0, colon), opts);
}

TEST(MpiCommunicatorTest, SplitIntoHalvesGivesIndependentCommunicators) {
  auto world = worldCommunicator();
  const int n = world->size();
  const int rank = world->rank();
  const std::vector<int> members = rank < n / 2 ? rankRange(0, n / 2) : rankRange(n / 2, n);
  auto half = world->split(members);
  const int half_size = static_cast<int>(members.size());
  ASSERT_EQ(half->size(), half_size);
  EXPECT_EQ(half->rank(), rank - members.front());
  EXPECT_EQ(half->backendName(), "mpi");

  // Both halves and the world run at the same time, each with its own thread.
  at::Tensor in_half = rankPattern(half->rank(), 1023, 0, at::kFloat);
  at::Tensor in_world = rankPattern(rank, 1023, 0, at::kLong);
  auto half_work = half->allReduce(in_half, ReduceOp::kSum);
  auto world_work = world->allReduce(in_world, ReduceOp::kMax);
  half_work->wait();
  world_work->wait();
  EXPECT_TRUE(at::equal(in_half, expectedReduction(ReduceOp::kSum, half_size, 1023, 0, at::kFloat)));
  EXPECT_TRUE(at::equal(in_world, expectedReduction(ReduceOp::kMax, n, 1023, 0, at::kLong)));
  EXPECT_EQ(half_work->record().seq, 1u);  // numbered per communicator

  // A split of a split: every rank alone.
  auto alone = half->split({half->rank()});
  EXPECT_EQ(alone->size(), 1);
  at::Tensor mine = rankPattern(rank, 7, 0, at::kDouble);
  alone->allReduce(mine, ReduceOp::kAvg)->wait();
  EXPECT_TRUE(at::equal(mine, rankPattern(rank, 7, 0, at::kDouble)));
  EXPECT_EQ(alone->bytesSent(), 0);
}

TEST(MpiCommunicatorTest, BadSplitListsAreInputErrors) {
  auto world = worldCommunicator();
  const int rank = world->rank();
  const int other = (rank + 1) % world->size();
  EXPECT_THROW(world->split({}), InputError);
  EXPECT_THROW(world->split({other}), InputError);                // without the caller
  EXPECT_THROW(world->split({rank, rank}), InputError);           // repeated
  EXPECT_THROW(world->split({rank, world->size()}), InputError);  // outside the world
  if (rank > 0) {
    EXPECT_THROW(world->split({rank, 0}), InputError);  // not ascending
  }
}

TEST(MpiCommunicatorTest, TimeoutNamesOperationStepAndTheRankThatDidNotArrive) {
  auto sync = worldCommunicator();
  const int rank = sync->rank();
  const int n = sync->size();
  auto store = storeAtBootstrapEndpoint(rank, n);
  CommunicatorOptions opts;
  opts.timeout = kTestTimeout;
  auto comm = makeMpiCommunicator(opts, store);
  comm->setStep(42);
  at::Tensor warm_up = at::ones({1});
  comm->allReduce(warm_up, ReduceOp::kSum)->wait();  // #1 on every rank

  at::Tensor t = rankPattern(rank, 7, 0, at::kFloat);
  if (rank != 0) {
    // Rank 0 skips #2 for now. 2 s leave the progress boards (published every 0.5 s) time to show who arrived.
    auto work = comm->allReduce(t, ReduceOp::kSum, OpOptions{std::chrono::milliseconds(2000)});
    try {
      work->wait();
      ADD_FAILURE() << "allReduce #2 completed although rank 0 never issued it";
    } catch (const PeerLostError& e) {
      EXPECT_THAT(errorMessage(e),
                  HasSubstr(c10::str("mpi allReduce #2 (step 42, 7 x Float) on rank ", rank, " of ", n,
                                     " timed out after 2000 ms; ranks 0 did not arrive (last seen at #1)")));
    }
    sync->barrier();
    work->wait();  // rank 0 issues #2 after the barrier: the same operation completes now
  } else {
    sync->barrier();
    comm->allReduce(t, ReduceOp::kSum)->wait();
  }
  EXPECT_TRUE(at::equal(t, expectedReduction(ReduceOp::kSum, n, 7, 0, at::kFloat)));
  comm.reset();
  sync->barrier();  // the store's server (rank 0) outlives every client
}

TEST(MpiCommunicatorTest, AbortFailsPendingAndLaterOperationsAtOnce) {
  auto comm = worldCommunicator();
  auto sync = worldCommunicator();
  const int rank = comm->rank();
  at::Tensor incoming = at::zeros({1023});
  if (rank == 0) {
    // Rank 1 sends only after the barrier below, so this receive is pending; 10 minutes would outlast the test.
    auto pending = comm->recv(incoming, 1, 5, OpOptions{std::chrono::minutes(10)});
    EXPECT_FALSE(pending->isCompleted());
    comm->abort();
    comm->abort();  // idempotent
    EXPECT_TRUE(pending->isCompleted());
    try {
      pending->wait();
      ADD_FAILURE() << "an aborted receive succeeded";
    } catch (const PeerLostError& e) {
      EXPECT_THAT(errorMessage(e), HasSubstr("mpi recv from rank 1 tag 5"));
      EXPECT_THAT(errorMessage(e), HasSubstr("aborted"));
    }
    at::Tensor later = at::ones({3});
    EXPECT_THROW(comm->allReduce(later, ReduceOp::kSum, OpOptions{std::chrono::minutes(10)})->wait(), PeerLostError);
    EXPECT_THROW(comm->send(later, 1, 0, OpOptions{std::chrono::minutes(10)})->wait(), PeerLostError);
  }
  sync->barrier();
  // Let the receive blocked inside MPI finish, so rank 0's communication thread can end before MPI_Finalize.
  if (rank == 1) comm->send(rankPattern(1, 1023, 0, at::kFloat), 0, 5)->wait();
  sync->barrier();
}

TEST(MpiCommunicatorTest, AllReduceProgressesWhileTheCallerComputes) {
  auto comm = worldCommunicator();
  at::Tensor t = rankPattern(comm->rank(), 100003, 0, at::kFloat);
  auto work = comm->allReduce(t, ReduceOp::kSum);
  // Compute without calling into MPI (isCompleted() only reads a flag) until the reduction says it is done.
  at::Tensor a = at::rand({64, 64}) / 64;
  int64_t rounds = 0;
  const auto deadline = std::chrono::steady_clock::now() + kTestTimeout;
  while (!work->isCompleted() && std::chrono::steady_clock::now() < deadline) {
    a = at::tanh(at::mm(a, a) + 1);
    ++rounds;
  }
  EXPECT_TRUE(work->isCompleted()) << "the all-reduce made no progress in " << rounds << " rounds of computation";
  work->wait();
  EXPECT_TRUE(at::equal(t, expectedReduction(ReduceOp::kSum, comm->size(), 100003, 0, at::kFloat)));
}

}  // namespace
}  // namespace loom::dist::test
