// The NCCL communicator, one thread per GPU. Needs CUDA devices: every test
// that does skips (with the reason) on a machine with fewer than it needs.
// Results are compared against closed forms (mpi_test_patterns.h) exactly: the
// values are small integers, exact in every dtype, so tolerance is zero.
#include "runtime/dist/nccl_communicator.h"
#include "runtime/core/error.h"
#include "tests/runtime/dist/mpi_test_patterns.h"
#include "tests/runtime/dist/nccl_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <algorithm>
#include <vector>

namespace loom::dist::test {
namespace {

using ::testing::HasSubstr;

constexpr std::chrono::milliseconds kTimeout{60000};

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16,
                                             at::kInt,   at::kLong,   at::kByte, at::kChar};
const std::vector<int64_t> kSizes = {0, 1, 7, 1023, 100003};
const std::vector<ReduceOp> kOps = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin};

std::unique_ptr<NcclCommunicator> communicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size) {
  CommunicatorOptions opts;
  opts.timeout = kTimeout;
  return makeNcclCommunicator(std::move(store), rank, size, /*device=*/rank, opts);
}

// Ranks on every GPU, at most 4 (the world sizes the MPI tests cover too).
int worldSize() {
  return std::min(cudaDevices().count, 4);
}

TEST(NcclCommunicatorTest, BadArgumentsFailBeforeAnyCommunication) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  EXPECT_THROW(makeNcclCommunicator(store, 2, 2, 0), InputError);
  EXPECT_THROW(makeNcclCommunicator({}, 0, 1, 0), InputError);
  const CudaDevices devices = cudaDevices();
  try {
    makeNcclCommunicator(store, 0, 1, /*device=*/devices.count);  // one past the last device, or none at all
    ADD_FAILURE() << "a communicator was created on device " << devices.count;
  } catch (const c10::Error& e) {
    const std::string message = errorMessage(e);
    if (devices.count == 0) {
      EXPECT_THAT(message, HasSubstr("cudaGetDeviceCount"));
    } else {
      EXPECT_THAT(message, HasSubstr(c10::str("CUDA device ", devices.count, " does not exist")));
    }
  }
}

TEST(NcclCommunicatorTest, OneRankRunsEveryOperationOnItsGpu) {
  LOOM_REQUIRE_CUDA_DEVICES(1);
  auto comm = communicator(c10::make_intrusive<c10d::HashStore>(), 0, 1);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->backendName(), "nccl");
  for (at::ScalarType type : {at::kFloat, at::kBFloat16, at::kLong}) {
    for (int64_t count : kSizes) {
      SCOPED_TRACE(c10::str(count, " x ", type));
      const at::Tensor host = rankPattern(0, count, 0, type);
      at::Tensor t = toDevice(host, 0);
      for (ReduceOp op : kOps) comm->allReduce(t, op)->wait();
      comm->broadcast(t, 0)->wait();
      at::Tensor gathered = toDevice(at::zeros({count}, type), 0);
      comm->allGather(t, gathered)->wait();
      at::Tensor scattered = toDevice(at::zeros({count}, type), 0);
      comm->reduceScatter(gathered, scattered, ReduceOp::kSum)->wait();
      EXPECT_TRUE(at::equal(toHost(t), host));
      EXPECT_TRUE(at::equal(toHost(scattered), host));
    }
  }
  comm->barrier();
  EXPECT_EQ(comm->split({0})->size(), 1);
  EXPECT_EQ(comm->splitByColor(0, 0)->size(), 1);
  EXPECT_EQ(comm->splitByColor(-1, 0), nullptr);
}

TEST(NcclCommunicatorTest, BadTensorsAreInputErrors) {
  LOOM_REQUIRE_CUDA_DEVICES(1);
  auto comm = communicator(c10::make_intrusive<c10d::HashStore>(), 0, 1);
  at::Tensor on_cpu = at::ones({4});
  EXPECT_THROW(comm->allReduce(on_cpu, ReduceOp::kSum), InputError);
  at::Tensor matrix = toDevice(at::ones({4, 3}), 0);
  at::Tensor column = matrix.select(1, 0);
  EXPECT_THROW(comm->broadcast(column, 0), InputError);
  at::Tensor complex = toDevice(at::ones({2}, at::kComplexFloat), 0);
  EXPECT_THROW(comm->allReduce(complex, ReduceOp::kSum), InputError);
}

TEST(NcclCommunicatorTest, EveryCollectiveDtypeAndSizeAcrossGpus) {
  LOOM_REQUIRE_CUDA_DEVICES(2);
  const int n = worldSize();
  runRanks(n, [n](int rank, c10::intrusive_ptr<c10d::Store> store) {
    auto comm = communicator(store, rank, n);
    for (at::ScalarType type : kDtypes) {
      for (int64_t count : kSizes) {
        SCOPED_TRACE(c10::str("rank ", rank, ": ", count, " x ", type));
        for (ReduceOp op : kOps) {
          at::Tensor t = toDevice(rankPattern(rank, count, 0, type), rank);
          comm->allReduce(t, op)->wait();
          EXPECT_TRUE(at::equal(toHost(t), expectedReduction(op, n, count, 0, type))) << reduceOpName(op);

          at::Tensor shard = toDevice(at::full({count}, 99, type), rank);
          comm->reduceScatter(toDevice(rankPattern(rank, n * count, 0, type), rank), shard, op)->wait();
          EXPECT_TRUE(at::equal(toHost(shard), expectedReduction(op, n, count, rank * count, type)))
              << "reduceScatter " << reduceOpName(op);
        }
        for (int root = 0; root < n; ++root) {
          at::Tensor t = toDevice(rankPattern(rank, count, 0, type), rank);
          comm->broadcast(t, root)->wait();
          EXPECT_TRUE(at::equal(toHost(t), rankPattern(root, count, 0, type))) << "broadcast from " << root;
        }
        at::Tensor gathered = toDevice(at::full({n * count}, 99, type), rank);
        comm->allGather(toDevice(rankPattern(rank, count, 0, type), rank), gathered)->wait();
        const at::Tensor host = toHost(gathered);
        for (int r = 0; r < n; ++r) {
          EXPECT_TRUE(at::equal(host.narrow(0, r * count, count), rankPattern(r, count, 0, type))) << "slice " << r;
        }
      }
    }
    comm->barrier();
  });
}

TEST(NcclCommunicatorTest, SendRecvRingAcrossGpus) {
  LOOM_REQUIRE_CUDA_DEVICES(2);
  const int n = worldSize();
  runRanks(n, [n](int rank, c10::intrusive_ptr<c10d::Store> store) {
    auto comm = communicator(store, rank, n);
    const int right = (rank + 1) % n;
    const int left = (rank + n - 1) % n;
    for (int64_t count : kSizes) {
      SCOPED_TRACE(c10::str("rank ", rank, ": ", count, " floats"));
      at::Tensor incoming = toDevice(at::full({count}, 99.0f), rank);
      // Every rank sends first: launched as one group with the receive, this cannot deadlock.
      auto send = comm->send(toDevice(rankPattern(rank, count, 0, at::kFloat), rank), right, 0);
      auto recv = comm->recv(incoming, left, 0);
      recv->wait();
      send->wait();
      EXPECT_TRUE(at::equal(toHost(incoming), rankPattern(left, count, 0, at::kFloat)));
    }
  });
}

TEST(NcclCommunicatorTest, SplitColorSplitAndShrinkGiveWorkingCommunicators) {
  LOOM_REQUIRE_CUDA_DEVICES(2);
  const int n = worldSize();
  runRanks(n, [n](int rank, c10::intrusive_ptr<c10d::Store> store) {
    auto comm = communicator(store, rank, n);
    const bool lower = rank < n / 2;
    std::vector<int> members;
    for (int r = lower ? 0 : n / 2; r < (lower ? n / 2 : n); ++r) members.push_back(r);
    const int half_size = static_cast<int>(members.size());

    auto half = comm->split(members);
    EXPECT_EQ(half->size(), half_size);
    at::Tensor t = toDevice(rankPattern(half->rank(), 1023, 0, at::kFloat), rank);
    half->allReduce(t, ReduceOp::kSum)->wait();
    EXPECT_TRUE(at::equal(toHost(t), expectedReduction(ReduceOp::kSum, half_size, 1023, 0, at::kFloat)));

    auto by_color = comm->splitByColor(lower ? 0 : 1, rank);
    ASSERT_NE(by_color, nullptr);
    EXPECT_EQ(by_color->size(), half_size);
    at::Tensor u = toDevice(rankPattern(by_color->rank(), 7, 0, at::kLong), rank);
    by_color->allReduce(u, ReduceOp::kMax)->wait();
    EXPECT_TRUE(at::equal(toHost(u), expectedReduction(ReduceOp::kMax, half_size, 7, 0, at::kLong)));

    // The last rank leaves; the others shrink without it (it calls nothing).
    if (rank == n - 1) return;
    auto survivors = comm->shrink({n - 1}, /*abort_pending=*/false);
    EXPECT_EQ(survivors->size(), n - 1);
    EXPECT_EQ(survivors->rank(), rank);
    at::Tensor v = toDevice(rankPattern(rank, 1023, 0, at::kDouble), rank);
    survivors->allReduce(v, ReduceOp::kSum)->wait();
    EXPECT_TRUE(at::equal(toHost(v), expectedReduction(ReduceOp::kSum, n - 1, 1023, 0, at::kDouble)));
  });
}

TEST(NcclCommunicatorTest, TimeoutNamesOperationStepAndTheRankThatDidNotArrive) {
  LOOM_REQUIRE_CUDA_DEVICES(2);
  runRanks(2, [](int rank, c10::intrusive_ptr<c10d::Store> store) {
    auto comm = communicator(store, rank, 2);
    comm->setStep(7);
    at::Tensor t = toDevice(at::ones({1023}), rank);
    comm->allReduce(t, ReduceOp::kSum)->wait();  // #1 on both ranks
    if (rank == 0) {
      // Rank 1 never issues #2. 2 s leave the progress boards (published every 0.5 s) time to show who arrived.
      try {
        comm->allReduce(t, ReduceOp::kSum, OpOptions{std::chrono::milliseconds(2000)})->wait();
        ADD_FAILURE() << "allReduce #2 completed without rank 1";
      } catch (const PeerLostError& e) {
        EXPECT_THAT(errorMessage(e), HasSubstr("nccl allReduce #2 (step 7, 1023 x Float) on rank 0 of 2 timed out "
                                               "after 2000 ms; ranks 1 did not arrive (last seen at #1)"));
      }
      store->set("rank 0 timed out", std::vector<uint8_t>{1});
    } else {
      store->wait({"rank 0 timed out"});
    }
    comm->abort();  // the kernel of #2 still waits for rank 1 on the GPU: abort stops it
  });
}

TEST(NcclCommunicatorTest, AbortFailsAPendingReceiveAtOnce) {
  LOOM_REQUIRE_CUDA_DEVICES(2);
  runRanks(2, [](int rank, c10::intrusive_ptr<c10d::Store> store) {
    auto comm = communicator(store, rank, 2);
    if (rank == 0) {
      at::Tensor incoming = toDevice(at::zeros({1023}), 0);
      auto pending = comm->recv(incoming, 1, 0, OpOptions{std::chrono::minutes(10)});  // rank 1 never sends
      EXPECT_FALSE(pending->isCompleted());
      comm->abort();
      comm->abort();  // idempotent
      try {
        pending->wait();
        ADD_FAILURE() << "an aborted receive succeeded";
      } catch (const PeerLostError& e) {
        EXPECT_THAT(errorMessage(e), HasSubstr("aborted"));
      }
      EXPECT_THROW(comm->allReduce(incoming, ReduceOp::kSum)->wait(), PeerLostError);
      store->set("rank 0 aborted", std::vector<uint8_t>{1});
    } else {
      store->wait({"rank 0 aborted"});
      comm->abort();
    }
  });
}

}  // namespace
}  // namespace loom::dist::test
