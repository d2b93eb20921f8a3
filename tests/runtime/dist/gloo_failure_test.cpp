// Sub-groups, timeouts, abort() and lost peers on the Gloo communicator.
#include "runtime/core/error.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <future>
#include <thread>

namespace loom::dist {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;

std::string peerLostMessage(const std::function<void()>& call) {
  try {
    call();
  } catch (const PeerLostError& e) {
    return errorMessage(e);
  }
  ADD_FAILURE() << "no PeerLostError";
  return "";
}

TEST(GlooSplitTest, DisjointHalvesRunTheirOwnCollectives) {
  test::runRanks(4, [](int rank, Communicator& comm) {
    const std::vector<int> half = rank < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3};
    auto sub = comm.split(half);
    EXPECT_EQ(sub->rank(), rank % 2);
    EXPECT_EQ(sub->size(), 2);
    EXPECT_EQ(sub->backendName(), "gloo");
    at::Tensor t = at::full({5}, rank + 1.0);
    sub->allReduce(t, ReduceOp::kSum)->wait();
    const double expected = rank < 2 ? 1 + 2 : 3 + 4;
    EXPECT_TRUE(at::equal(t, at::full({5}, expected)));
    at::Tensor gathered = at::empty({4}, at::kLong);
    sub->allGather(at::tensor({rank, 10 * rank}, at::kLong), gathered)->wait();
    const int first = half[0];
    const int second = half[1];
    EXPECT_TRUE(at::equal(gathered, at::tensor({first, 10 * first, second, 10 * second}, at::kLong)));
    // The same list split again is a fresh group; the parent still works.
    auto again = comm.split(half);
    again->barrier();
    at::Tensor all = at::ones({3});
    comm.allReduce(all, ReduceOp::kSum)->wait();
    EXPECT_TRUE(at::equal(all, at::full({3}, 4.0)));
  });
}

TEST(GlooSplitTest, NonMembersDoNotCall) {
  test::runRanks(3, [](int rank, Communicator& comm) {
    if (rank != 1) {
      auto sub = comm.split({0, 2});
      at::Tensor t = at::full({2}, static_cast<double>(rank));
      sub->allReduce(t, ReduceOp::kMax)->wait();
      EXPECT_TRUE(at::equal(t, at::full({2}, 2.0)));
    }
    comm.barrier();
  });
}

TEST(GlooSplitTest, BadRankListsAreInputErrors) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    EXPECT_THROW(comm.split({}), InputError);
    EXPECT_THROW(comm.split({1, 0}), InputError);
    EXPECT_THROW(comm.split({0, 0, 1}), InputError);
    EXPECT_THROW(comm.split({0, 2}), InputError);
    EXPECT_THROW(comm.split({1 - rank}), InputError);  // not a member
  });
}

// A store whose get() of Gloo's address keys ("gloo/...") answers late: the
// rank using it publishes its addresses, then waits before connecting to its peers.
class SlowAddressStore final : public c10d::Store {
 public:
  SlowAddressStore(c10::intrusive_ptr<c10d::Store> inner, milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  void set(const std::string& key, const std::vector<uint8_t>& value) override { inner_->set(key, value); }
  std::vector<uint8_t> compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) override {
    return inner_->compareSet(key, expected, desired);
  }
  std::vector<uint8_t> get(const std::string& key) override {
    if (key.rfind("gloo/", 0) == 0) std::this_thread::sleep_for(delay_);
    return inner_->get(key);
  }
  int64_t add(const std::string& key, int64_t value) override { return inner_->add(key, value); }
  bool deleteKey(const std::string& key) override { return inner_->deleteKey(key); }
  bool check(const std::vector<std::string>& keys) override { return inner_->check(keys); }
  int64_t getNumKeys() override { return inner_->getNumKeys(); }
  void wait(const std::vector<std::string>& keys) override { inner_->wait(keys); }
  void wait(const std::vector<std::string>& keys, const milliseconds& timeout) override { inner_->wait(keys, timeout); }
  // Pure virtual in libtorch 2.x's Store, absent in 1.13: no `override`.
  c10::intrusive_ptr<c10d::Store> clone() { return c10::make_intrusive<SlowAddressStore>(inner_, delay_); }

 private:
  c10::intrusive_ptr<c10d::Store> inner_;
  milliseconds delay_;
};

// Construction is collective: a rank whose connection the peer's listener has
// not yet accepted must not return (and close its sockets) before that peer is
// connected too, or the peer's construction fails with "Connection closed by
// peer". Rank 0 connects 300 ms late; rank 1 destroys its communicator at once.
TEST(GlooConnectTest, ARankThatLeavesRightAfterConstructionDoesNotFailItsPeers) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  auto slow = c10::make_intrusive<SlowAddressStore>(store, milliseconds(300));
  std::string rank0_error;
  std::thread rank0([&] {
    try {
      auto comm = makeGlooCommunicator(slow, 0, 2, test::testGlooOptions());
    } catch (const std::exception& e) {
      rank0_error = errorMessage(e);
    }
  });
  std::string rank1_error;
  try {
    auto comm = makeGlooCommunicator(store, 1, 2, test::testGlooOptions());
  } catch (const std::exception& e) {
    rank1_error = errorMessage(e);
  }
  rank0.join();
  EXPECT_EQ(rank0_error, "");
  EXPECT_EQ(rank1_error, "");
}

TEST(GlooFailureTest, TimeoutNamesOperationStepAndMissingRank) {
  std::promise<void> checked;
  std::shared_future<void> rank0_done = checked.get_future().share();
  test::runRanks(2, [&](int rank, Communicator& comm) {
    comm.barrier();  // operation #1
    if (rank == 1) {
      rank0_done.wait();  // skips the all-reduce, stays alive until rank 0 has timed out
      return;
    }
    comm.setStep(7);
    at::Tensor t = at::ones({16});
    auto work = comm.allReduce(t, ReduceOp::kSum, {milliseconds(1000)});
    const std::string message = peerLostMessage([&] { work->wait(); });
    checked.set_value();
    EXPECT_THAT(message, HasSubstr("gloo allReduce #2 (step 7, 16 x Float) on rank 0 of 2 timed out after 1000 ms"));
    EXPECT_THAT(message, HasSubstr("ranks 1 did not arrive (last seen at #1)"));
  });
}

TEST(GlooFailureTest, AbortFailsPendingAndLaterOperationsAtOnce) {
  std::promise<void> aborted;
  std::shared_future<void> rank0_done = aborted.get_future().share();
  test::runRanks(2, [&](int rank, Communicator& comm) {
    comm.barrier();
    if (rank == 1) {
      rank0_done.wait();
      return;
    }
    // Neither completes: rank 1 joins no all-reduce and sends nothing. Their
    // timeouts are the test fixture's 30 s, so "timed out" would mean abort() did nothing.
    at::Tensor t = at::ones({8});
    auto collective = comm.allReduce(t, ReduceOp::kSum);
    at::Tensor inbox = at::empty({8});
    auto recv = comm.recv(inbox, 1, 3);
    std::thread aborter([&] {
      std::this_thread::sleep_for(milliseconds(200));
      comm.abort();
    });
    const std::string pending = peerLostMessage([&] { collective->wait(); });
    aborter.join();
    EXPECT_THAT(pending, HasSubstr("gloo allReduce #2"));
    EXPECT_THAT(pending, HasSubstr("failed: the communicator was aborted"));
    EXPECT_THAT(pending, Not(HasSubstr("timed out")));
    EXPECT_THAT(peerLostMessage([&] { recv->wait(); }),
                HasSubstr("recv from rank 1 tag 3 (8 x Float) on rank 0 of 2 failed: the communicator was aborted"));
    EXPECT_THAT(peerLostMessage([&] { comm.allReduce(t, ReduceOp::kSum)->wait(); }), HasSubstr("aborted"));
    EXPECT_THAT(peerLostMessage([&] { comm.send(t, 1, 0)->wait(); }), HasSubstr("aborted"));
    EXPECT_THAT(peerLostMessage([&] { comm.barrier(); }), HasSubstr("aborted"));
    EXPECT_THROW(comm.split({0, 1}), PeerLostError);
    comm.abort();  // idempotent
    aborted.set_value();
  });
}

TEST(GlooFailureTest, APeerThatLeavesFailsTheOperationBeforeItsTimeout) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    comm.barrier();
    if (rank == 1) return;  // its communicator closes its connections
    at::Tensor t = at::ones({1 << 16});
    const std::string message =
        peerLostMessage([&] { comm.allReduce(t, ReduceOp::kSum, {std::chrono::seconds(20)})->wait(); });
    EXPECT_THAT(message, HasSubstr("gloo allReduce #2"));
    EXPECT_THAT(message, HasSubstr("failed:"));
    EXPECT_THAT(message, Not(HasSubstr("timed out")));
  });
}

// Gloo posts sends and receives in the caller's thread, where a connection
// already broken by a lost peer throws at once; that must be a peer loss reported
// by wait(), like any other failure, not a raw transport error from send().
TEST(GlooFailureTest, AnOperationIssuedOnABrokenConnectionFailsAsAPeerLoss) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    comm.barrier();
    if (rank == 1) return;  // its communicator closes its connections
    at::Tensor t = at::ones({1 << 16});
    peerLostMessage([&] { comm.allReduce(t, ReduceOp::kSum, {std::chrono::seconds(20)})->wait(); });
    for (int tag = 0; tag < 2; ++tag) {
      std::unique_ptr<Work> send;
      std::unique_ptr<Work> recv;
      ASSERT_NO_THROW(send = comm.send(t, 1, tag));
      ASSERT_NO_THROW(recv = comm.recv(t, 1, tag));
      EXPECT_THAT(peerLostMessage([&] { send->wait(); }), HasSubstr("gloo send to rank 1 tag " + std::to_string(tag)));
      EXPECT_THAT(peerLostMessage([&] { recv->wait(); }), HasSubstr("gloo recv from rank 1 tag " + std::to_string(tag)));
    }
  });
}

TEST(GlooFailureTest, RunRanksRethrowsTheFirstFailureWithItsRank) {
  try {
    test::runRanks(3, [](int rank, Communicator& comm) {
      if (rank == 2) LOOM_THROW(InputError, "bad input on purpose");
      comm.barrier();  // ranks 0 and 1 wait for rank 2 until runRanks aborts them
    });
    FAIL() << "runRanks swallowed the failure";
  } catch (const InputError& e) {
    EXPECT_THAT(errorMessage(e), HasSubstr("bad input on purpose"));
    EXPECT_THAT(errorMessage(e), HasSubstr("on rank 2"));
  }
}

TEST(GlooFailureTest, NegativeTagsAreInputErrors) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    at::Tensor t = at::ones({2});
    EXPECT_THROW(comm.send(t, 1 - rank, -1), InputError);
    comm.barrier();
  });
}

}  // namespace
}  // namespace loom::dist
