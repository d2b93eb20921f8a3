#include "runtime/core/error.h"
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
    work->wait();
    EXPECT_TRUE(at::equal(t, expected));
  }
  comm->broadcast(t, 0)->wait();
  EXPECT_TRUE(at::equal(t, expected));
  at::Tensor gathered = at::empty({5});
  comm->allGather(t, gathered)->wait();
  EXPECT_TRUE(at::equal(gathered, expected));
  at::Tensor scattered = at::empty({5});
  comm->reduceScatter(t, scattered, ReduceOp::kSum)->wait();
  EXPECT_TRUE(at::equal(scattered, expected));
  comm->barrier();
  EXPECT_EQ(comm->bytesSent(), 0);
  EXPECT_EQ(comm->bytesReceived(), 0);
  EXPECT_EQ(comm->split({0})->size(), 1);
}

TEST(SelfCommunicatorTest, BadArgumentsAreInputErrors) {
  auto comm = makeSelfCommunicator();
  at::Tensor t = at::zeros({3});
  at::Tensor wrong = at::zeros({4});
  EXPECT_THROW(comm->broadcast(t, 1), InputError);
  EXPECT_THROW(comm->allGather(t, wrong), InputError);
  EXPECT_THROW(comm->reduceScatter(wrong, t, ReduceOp::kSum), InputError);
  EXPECT_THROW(comm->send(t, 0, 0), InputError);
  EXPECT_THROW(comm->split({0, 1}), InputError);
  EXPECT_THROW(makeSelfCommunicator(CommunicatorOptions{std::chrono::milliseconds(0)}), InputError);
}

}  // namespace
}  // namespace loom::dist
