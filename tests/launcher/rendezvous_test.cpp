// The store protocol in one process: launchers as threads over a HashStore.
// Membership, the last-call window, timeouts that name the missing nodes, and the
// attempt barrier / first-outcome-wins / leave protocol of JobCoordinator.
#include "launcher/job_coordinator.h"
#include "launcher/node_rendezvous.h"
#include "launcher/signal_watch.h"
#include "runtime/core/error.h"
#include "tests/support/error_of.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <csignal>
#include <future>
#include <thread>

namespace loom::launcher {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

LaunchOptions nodeOptions(int node_rank, int min_nodes, int max_nodes) {
  LaunchOptions opts;
  opts.node_rank = node_rank;
  opts.min_nodes = min_nodes;
  opts.max_nodes = max_nodes;
  opts.rdzv_endpoint = Endpoint{"node0", 29400};
  opts.run_id = "test";
  opts.rdzv_timeout = 20s;
  opts.last_call = 20s;
  return opts;
}

std::future<Membership> joinAsync(c10d::Store& store, LaunchOptions opts) {
  return std::async(std::launch::async, [&store, opts] {
    return joinRendezvous(
        store, opts, "host" + std::to_string(opts.node_rank), [] {}, LaunchLog());
  });
}

// Waits until the node with `node_rank` registered, so tests do not race its thread.
void awaitRegistration(c10d::Store& store, int node_rank) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;  // a guard against a hang, not a timing check
  while (!store.check({"node/" + std::to_string(node_rank)})) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "node " << node_rank << " never registered";
    std::this_thread::sleep_for(1ms);
  }
}

using loom::test::errorOf;

TEST(RendezvousTest, NodesAgreeOnMembershipOrderedByNodeRank) {
  c10d::HashStore store;
  auto node2 = joinAsync(store, nodeOptions(2, 3, 3));
  auto node1 = joinAsync(store, nodeOptions(1, 3, 3));
  auto node0 = joinAsync(store, nodeOptions(0, 3, 3));
  const Membership m0 = node0.get();
  const Membership m1 = node1.get();
  const Membership m2 = node2.get();
  for (const Membership* m : {&m0, &m1, &m2}) {
    EXPECT_EQ(m->node_ranks, (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(m->hosts, (std::vector<std::string>{"host0", "host1", "host2"}));
    EXPECT_EQ(m->group_world_size, 3);
  }
  EXPECT_EQ(m0.group_rank, 0);
  EXPECT_EQ(m1.group_rank, 1);
  EXPECT_EQ(m2.group_rank, 2);
}

TEST(RendezvousTest, LastCallClosesWithFewerThanMaxAndRefusesLaterNodes) {
  c10d::HashStore store;
  LaunchOptions host = nodeOptions(0, 2, 4);
  host.last_call = 300ms;
  auto node3 = joinAsync(store, nodeOptions(3, 2, 4));  // sparse node ranks are fine within [0, MAX)
  awaitRegistration(store, 3);
  const Membership m0 = joinAsync(store, host).get();
  const Membership m3 = node3.get();
  EXPECT_EQ(m0.node_ranks, (std::vector<int>{0, 3}));
  EXPECT_EQ(m3.group_rank, 1);
  EXPECT_EQ(m3.group_world_size, 2);
  const std::string late = errorOf<InputError>([&] { joinAsync(store, nodeOptions(1, 2, 4)).get(); });
  EXPECT_THAT(late, HasSubstr("closed without node 1"));
  EXPECT_THAT(late, HasSubstr("node ranks 0, 3"));
}

TEST(RendezvousTest, TimeoutNamesTheNodesThatDidNotJoin) {
  c10d::HashStore store;
  LaunchOptions host = nodeOptions(0, 3, 3);
  host.rdzv_timeout = 200ms;
  auto node2 = joinAsync(store, nodeOptions(2, 3, 3));
  awaitRegistration(store, 2);
  const std::string on_host = errorOf<PeerLostError>([&] { joinAsync(store, host).get(); });
  EXPECT_THAT(on_host, HasSubstr("timed out after 0.2 s"));
  EXPECT_THAT(on_host, HasSubstr("2 of the 3 required node(s) joined"));
  EXPECT_THAT(on_host, HasSubstr("node ranks that did not join: 1."));
  // The waiting node learns the same from node 0's closing record.
  EXPECT_EQ(errorOf<PeerLostError>([&] { node2.get(); }), on_host);
}

TEST(RendezvousTest, NodeWaitingAloneTimesOutNamingTheOthers) {
  c10d::HashStore store;
  LaunchOptions node1 = nodeOptions(1, 3, 3);
  node1.rdzv_timeout = 200ms;
  EXPECT_THAT(errorOf<PeerLostError>([&] { joinAsync(store, node1).get(); }),
              HasSubstr("node ranks that did not join: 0, 2."));
}

TEST(RendezvousTest, DuplicateNodeRankIsRefused) {
  c10d::HashStore store;
  LaunchOptions first = nodeOptions(1, 2, 2);
  first.rdzv_timeout = 200ms;
  auto pending = joinAsync(store, first);
  awaitRegistration(store, 1);
  const std::string message = errorOf<InputError>([&] { joinAsync(store, nodeOptions(1, 2, 2)).get(); });
  EXPECT_THAT(message, HasSubstr("--node-rank 1 of run 'test' is already taken by the launcher on host1"));
  EXPECT_THROW(pending.get(), PeerLostError);
}

TEST(RendezvousTest, MismatchedWorkerCountsAreRefusedOnEveryNode) {
  c10d::HashStore store;
  LaunchOptions node1 = nodeOptions(1, 2, 2);
  node1.nproc_per_node = 4;
  auto pending = joinAsync(store, node1);
  awaitRegistration(store, 1);
  const std::string on_host = errorOf<InputError>([&] { joinAsync(store, nodeOptions(0, 2, 2)).get(); });
  EXPECT_THAT(on_host, HasSubstr("node 1 on host1 runs --nproc-per-node 4"));
  EXPECT_THAT(on_host, HasSubstr("node 0 runs --nproc-per-node 1"));
  EXPECT_EQ(errorOf<InputError>([&] { pending.get(); }), on_host);
}

Membership twoNodes(int group_rank) {
  Membership m;
  m.group_rank = group_rank;
  m.group_world_size = 2;
  m.node_ranks = {0, 1};
  m.hosts = {"host0", "host1"};
  return m;
}

AttemptOutcome failureOf(int node_rank, int rank) {
  AttemptOutcome outcome;
  outcome.node_rank = node_rank;
  outcome.failure.rank = rank;
  outcome.failure.status = ExitStatus{1, 0, false};
  return outcome;
}

TEST(JobCoordinatorTest, FirstReportedOutcomeWinsOnEveryNode) {
  c10d::HashStore store;
  JobCoordinator node0(store, twoNodes(0), 0, 20s);
  JobCoordinator node1(store, twoNodes(1), 1, 20s);
  auto entered = std::async(std::launch::async, [&] { node1.enterAttempt(0, [] {}); });
  node0.enterAttempt(0, [] {});
  entered.get();
  EXPECT_FALSE(node0.reported().has_value());
  EXPECT_EQ(node1.report(failureOf(1, 3)).failure.rank, 3);
  EXPECT_EQ(node0.report(failureOf(0, 0)).failure.rank, 3);  // node 1 was first
  EXPECT_EQ(node0.reported()->node_rank, 1);

  // The next attempt starts clean.
  entered = std::async(std::launch::async, [&] { node1.enterAttempt(1, [] {}); });
  node0.enterAttempt(1, [] {});
  entered.get();
  EXPECT_FALSE(node1.reported().has_value());
  node0.reportSuccess();
  EXPECT_FALSE(node1.everyNodeSucceeded());
  node1.reportSuccess();
  EXPECT_TRUE(node0.everyNodeSucceeded());
  EXPECT_TRUE(node1.leave(1s).empty());
  EXPECT_TRUE(node0.leave(1s).empty());
}

TEST(JobCoordinatorTest, BarrierTimeoutNamesTheMissingNode) {
  c10d::HashStore store;
  JobCoordinator node0(store, twoNodes(0), 0, 200ms);
  const std::string message = errorOf<PeerLostError>([&] { node0.enterAttempt(0, [] {}); });
  EXPECT_THAT(message, HasSubstr("attempt 0: node rank(s) 1 did not start it within 0.2 s"));
  EXPECT_EQ(node0.leave(100ms), std::vector<int>{1});
}

TEST(JobCoordinatorTest, AStopReportedAheadEndsTheNextBarrier) {
  c10d::HashStore store;
  JobCoordinator node0(store, twoNodes(0), 0, 20s);
  JobCoordinator node1(store, twoNodes(1), 1, 20s);
  auto entered = std::async(std::launch::async, [&] { node1.enterAttempt(0, [] {}); });
  node0.enterAttempt(0, [] {});
  entered.get();
  AttemptOutcome stop;
  stop.kind = AttemptOutcome::Kind::kStopped;
  stop.signal = SIGINT;
  node0.reportStopAhead(stop);
  try {
    node1.enterAttempt(1, [] {});
    FAIL() << "expected StopRequested";
  } catch (const StopRequested& e) {
    EXPECT_EQ(e.signal(), SIGINT);
  }
}

}  // namespace
}  // namespace loom::launcher
