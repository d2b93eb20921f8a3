#include "runtime/dist/communicator.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace loom::dist {
namespace {

TEST(SelfCommunicatorTest, CollectivesOverOneRankAreIdentityAndMoveNoBytes) {
  auto comm = makeSelfCommunicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  at::Tensor t = at::arange(5, at::kFloat);
  const at::Tensor expected = t.clone();
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    auto work = comm->allReduce(t, op);
    EXPECT_TRUE(work->isCompleted());
    work->wait(std::chrono::milliseconds(1));
    EXPECT_TRUE(at::equal(t, expected));
  }
  comm->broadcast(t, 0)->wait(std::chrono::milliseconds(1));
  EXPECT_TRUE(at::equal(t, expected));
  EXPECT_THROW(comm->broadcast(t, 1), c10::ValueError);
  comm->barrier(std::chrono::milliseconds(1));
  EXPECT_EQ(comm->bytesSent(), 0);
  EXPECT_EQ(comm->bytesReceived(), 0);
}

}  // namespace
}  // namespace loom::dist
