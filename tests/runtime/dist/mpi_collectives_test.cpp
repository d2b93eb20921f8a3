// Every collective of the MPI communicator against closed forms, for every
// supported dtype, sizes 0, 1, 7, 1023 and 100003, every reduce operation and
// every broadcast root; and the byte counters against the base class formulas.
// Tolerance: none. The values are small integers (mpi_test_util.h), exact in
// every dtype, so results must be bit-identical.
#include "runtime/core/error.h"
#include "tests/runtime/dist/mpi_test_util.h"

#include <gtest/gtest.h>

#include <vector>

namespace loom::dist::test {
namespace {

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16,
                                             at::kInt,   at::kLong,   at::kByte, at::kChar};
const std::vector<int64_t> kSizes = {0, 1, 7, 1023, 100003};
const std::vector<ReduceOp> kOps = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin};

int64_t bytesOf(int64_t count, at::ScalarType type) {
  return count * static_cast<int64_t>(c10::elementSize(type));
}

// Checks the counters moved by exactly (sent, received) since the last call.
class ByteLedger {
 public:
  explicit ByteLedger(const Communicator& comm) : comm_(comm) {}
  void expectMoved(int64_t sent, int64_t received) {
    EXPECT_EQ(comm_.bytesSent() - sent_, sent);
    EXPECT_EQ(comm_.bytesReceived() - received_, received);
    sent_ = comm_.bytesSent();
    received_ = comm_.bytesReceived();
  }

 private:
  const Communicator& comm_;
  int64_t sent_ = 0;
  int64_t received_ = 0;
};

TEST(MpiCollectivesTest, AllReduceEveryOpDtypeAndSize) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  ByteLedger ledger(*comm);
  for (at::ScalarType type : kDtypes) {
    for (int64_t count : kSizes) {
      for (ReduceOp op : kOps) {
        SCOPED_TRACE(c10::str(reduceOpName(op), " of ", count, " x ", type, " over ", n, " ranks"));
        at::Tensor t = rankPattern(comm->rank(), count, 0, type);
        comm->allReduce(t, op)->wait();
        EXPECT_TRUE(at::equal(t, expectedReduction(op, n, count, 0, type)));
        const int64_t volume = 2 * (n - 1) * bytesOf(count, type) / n;
        ledger.expectMoved(volume, volume);
      }
    }
  }
}

TEST(MpiCollectivesTest, AverageOfIntegersTruncatesTowardZero) {
  auto comm = worldCommunicator();
  for (at::ScalarType type : {at::kChar, at::kInt, at::kLong}) {
    SCOPED_TRACE(c10::str(type));
    // Sum -1 over n >= 2 ranks: -1 / n truncates to 0 (flooring would give -1).
    at::Tensor t = at::full({5}, comm->rank() == 0 ? -1 : 0, type);
    comm->allReduce(t, ReduceOp::kAvg)->wait();
    EXPECT_TRUE(at::equal(t, at::zeros({5}, type)));
  }
}

TEST(MpiCollectivesTest, BroadcastFromEveryRoot) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  ByteLedger ledger(*comm);
  for (at::ScalarType type : kDtypes) {
    for (int64_t count : kSizes) {
      for (int root = 0; root < n; ++root) {
        SCOPED_TRACE(c10::str("broadcast of ", count, " x ", type, " from rank ", root));
        at::Tensor t = rankPattern(comm->rank(), count, 0, type);
        comm->broadcast(t, root)->wait();
        EXPECT_TRUE(at::equal(t, rankPattern(root, count, 0, type)));
        const int64_t bytes = bytesOf(count, type);
        ledger.expectMoved(comm->rank() == root ? bytes : 0, comm->rank() == root ? 0 : bytes);
      }
    }
  }
}

TEST(MpiCollectivesTest, AllGatherPlacesRankRAtSliceR) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  ByteLedger ledger(*comm);
  for (at::ScalarType type : kDtypes) {
    for (int64_t count : kSizes) {
      SCOPED_TRACE(c10::str("allGather of ", count, " x ", type));
      const at::Tensor input = rankPattern(comm->rank(), count, 0, type);
      at::Tensor output = at::full({n * count}, 99, type);
      comm->allGather(input, output)->wait();
      for (int r = 0; r < n; ++r) {
        EXPECT_TRUE(at::equal(output.narrow(0, r * count, count), rankPattern(r, count, 0, type))) << "slice " << r;
      }
      const int64_t volume = (n - 1) * bytesOf(count, type);
      ledger.expectMoved(volume, volume);
    }
  }
}

TEST(MpiCollectivesTest, AllGatherFromOwnSliceOfOutputInPlace) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  const int64_t count = 1023;
  at::Tensor output = at::zeros({n * count});
  output.narrow(0, comm->rank() * count, count).copy_(rankPattern(comm->rank(), count, 0, at::kFloat));
  const at::Tensor own = output.narrow(0, comm->rank() * count, count);
  comm->allGather(own, output)->wait();
  for (int r = 0; r < n; ++r) {
    EXPECT_TRUE(at::equal(output.narrow(0, r * count, count), rankPattern(r, count, 0, at::kFloat))) << "slice " << r;
  }
}

TEST(MpiCollectivesTest, ReduceScatterEveryOpDtypeAndSize) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  const int rank = comm->rank();
  ByteLedger ledger(*comm);
  for (at::ScalarType type : kDtypes) {
    for (int64_t count : kSizes) {
      for (ReduceOp op : kOps) {
        SCOPED_TRACE(c10::str("reduceScatter ", reduceOpName(op), " of ", count, " x ", type, " per rank"));
        const at::Tensor input = rankPattern(rank, n * count, 0, type);
        at::Tensor output = at::full({count}, 99, type);
        comm->reduceScatter(input, output, op)->wait();
        EXPECT_TRUE(at::equal(output, expectedReduction(op, n, count, rank * count, type)));
        const int64_t volume = (n - 1) * bytesOf(count, type);
        ledger.expectMoved(volume, volume);
      }
    }
  }
}

TEST(MpiCollectivesTest, ReduceScatterIntoAViewOfItsOwnInput) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  const int64_t count = 1023;
  at::Tensor buffer = rankPattern(comm->rank(), n * count, 0, at::kFloat);
  at::Tensor shard = buffer.narrow(0, comm->rank() * count, count);
  comm->reduceScatter(buffer, shard, ReduceOp::kSum)->wait();
  EXPECT_TRUE(at::equal(shard, expectedReduction(ReduceOp::kSum, n, count, comm->rank() * count, at::kFloat)));
}

TEST(MpiCollectivesTest, NonContiguousTensorsAreReducedAndBroadcastInPlace) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  // A transposed 7 x 5 view: the communicator works on a contiguous copy and writes back through the view.
  at::Tensor base = rankPattern(comm->rank(), 35, 0, at::kDouble).view({5, 7});
  at::Tensor view = base.t();
  ASSERT_FALSE(view.is_contiguous());
  comm->allReduce(view, ReduceOp::kMax)->wait();
  EXPECT_TRUE(at::equal(base, expectedReduction(ReduceOp::kMax, n, 35, 0, at::kDouble).view({5, 7})));

  at::Tensor column_base = rankPattern(comm->rank(), 14, 0, at::kInt).view({7, 2});
  at::Tensor column = column_base.select(1, 1);
  comm->broadcast(column, n - 1)->wait();
  EXPECT_TRUE(at::equal(column, rankPattern(n - 1, 14, 0, at::kInt).view({7, 2}).select(1, 1)));
  EXPECT_TRUE(
      at::equal(column_base.select(1, 0), rankPattern(comm->rank(), 14, 0, at::kInt).view({7, 2}).select(1, 0)));
}

TEST(MpiCollectivesTest, BarrierAndManyOperationsInFlightCompleteInIssueOrder) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  std::vector<at::Tensor> tensors;
  std::vector<std::unique_ptr<Work>> works;
  for (int i = 0; i < 16; ++i) {
    tensors.push_back(rankPattern(comm->rank(), 1023, i, at::kFloat));
    works.push_back(comm->allReduce(tensors.back(), ReduceOp::kSum));
  }
  comm->barrier();
  for (int i = 0; i < 16; ++i) {
    works[i]->wait();
    EXPECT_TRUE(at::equal(tensors[i], expectedReduction(ReduceOp::kSum, n, 1023, i, at::kFloat))) << "operation " << i;
  }
  EXPECT_EQ(works.back()->record().seq, 16u);
}

TEST(MpiCollectivesTest, UnsupportedDtypesAndBadShapesAreInputErrors) {
  auto comm = worldCommunicator();
  at::Tensor flags = at::ones({3}, at::kBool);
  EXPECT_THROW(comm->allReduce(flags, ReduceOp::kSum), InputError);
  at::Tensor t = at::ones({3});
  at::Tensor wrong = at::ones({2});
  EXPECT_THROW(comm->allGather(t, wrong), InputError);
  EXPECT_THROW(comm->broadcast(t, comm->size()), InputError);
  // Moving bools (no arithmetic) is fine.
  comm->broadcast(flags, 0)->wait();
  EXPECT_TRUE(flags.all().item<bool>());
}

}  // namespace
}  // namespace loom::dist::test
