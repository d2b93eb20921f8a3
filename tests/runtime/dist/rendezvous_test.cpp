#include "runtime/dist/rendezvous.h"
#include "runtime/core/error.h"
#include "tests/runtime/dist/port_probe.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace loom::dist {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

RankIdentity identityOf(int rank, int world_size, int port, bool agent_store) {
  RankIdentity id;
  id.rank = rank;
  id.world_size = world_size;
  id.local_rank = rank;
  id.local_world_size = world_size;
  id.source = "test";
  id.master_addr = "127.0.0.1";
  id.master_port = port;
  id.agent_store = agent_store;
  return id;
}

std::vector<uint8_t> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

// Runs connectStore for `ranks` concurrently; returns each rank's error message ("" when it connected),
// after checking that the connected ranks share one store. The stores live until every rank is done, as
// in a job (rank 0's may be the server).
std::vector<std::string> rendezvous(const std::vector<int>& ranks, int world_size, int port, bool agent_store,
                                    milliseconds timeout) {
  std::vector<std::string> errors(ranks.size());
  std::vector<c10::intrusive_ptr<c10d::Store>> stores(ranks.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < ranks.size(); ++i) {
    threads.emplace_back([&, i] {
      try {
        auto& store = stores[i];
        store = connectStore(identityOf(ranks[i], world_size, port, agent_store), {timeout, "job"});
        store->set("hello/" + std::to_string(ranks[i]), bytes("from " + std::to_string(ranks[i])));
        for (int r : ranks) {
          EXPECT_EQ(store->get("hello/" + std::to_string(r)), bytes("from " + std::to_string(r)));
        }
      } catch (const std::exception& e) {
        errors[i] = std::string(typeid(e).name()) + ": " + errorMessage(e);
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

TEST(RendezvousTest, RanksMeetAtTheLaunchersStore) {
  auto server = hostStore("127.0.0.1", 0, 3, std::chrono::seconds(10));
  ASSERT_GT(server->getPort(), 0);
  const auto errors = rendezvous({0, 1, 2}, 3, server->getPort(), /*agent_store=*/true, std::chrono::seconds(10));
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  // The job's keys live under "<prefix>/<restart>/".
  EXPECT_TRUE(server->check({"job/0/hello/2"}));
}

TEST(RendezvousTest, RankZeroHostsTheStoreWithoutALauncher) {
  const int port = test::unusedTcpPort();
  const auto errors = rendezvous({0, 1, 2}, 3, port, /*agent_store=*/false, std::chrono::seconds(10));
  for (const std::string& e : errors) EXPECT_EQ(e, "");
}

TEST(RendezvousTest, EachRestartGetsFreshKeys) {
  auto server = hostStore("127.0.0.1", 0, 1, std::chrono::seconds(10));
  RankIdentity id = identityOf(0, 1, server->getPort(), true);
  auto first = connectStore(id, {std::chrono::seconds(10), "job"});
  first->set("state", bytes("old"));
  id.restart_count = 1;
  auto second = connectStore(id, {std::chrono::seconds(10), "job"});
  EXPECT_FALSE(second->check({"state"}));
  EXPECT_TRUE(first->check({"state"}));
}

TEST(RendezvousTest, ATimeoutNamesTheRanksThatDidNotArrive) {
  auto server = hostStore("127.0.0.1", 0, 3, std::chrono::seconds(10));
  const auto errors = rendezvous({0, 1}, 3, server->getPort(), /*agent_store=*/true, milliseconds(1000));
  for (const std::string& e : errors) {
    EXPECT_THAT(e, HasSubstr("PeerLostError"));
    EXPECT_THAT(e, HasSubstr("rendezvous at 127.0.0.1:" + std::to_string(server->getPort())));
    EXPECT_THAT(e, HasSubstr("ranks 2 did not arrive within 1000 ms (2 of 3 arrived"));
  }
}

TEST(RendezvousTest, AnUnreachableEndpointIsBadInputNamingIt) {
  const int port = test::unusedTcpPort();
  try {
    connectStore(identityOf(1, 2, port, false), {milliseconds(500), "job"});
    FAIL() << "connected to a port nobody listens on";
  } catch (const InputError& e) {
    const std::string message = errorMessage(e);
    EXPECT_THAT(message, HasSubstr("could not reach the store at 127.0.0.1:" + std::to_string(port)));
    EXPECT_THAT(message, HasSubstr("MASTER_ADDR/MASTER_PORT"));
    EXPECT_THAT(message, HasSubstr("--rdzv-endpoint"));
    EXPECT_THAT(message, HasSubstr("firewall"));
  }
}

TEST(RendezvousTest, AHostThatDoesNotResolveIsBadInput) {
  RankIdentity id = identityOf(1, 2, 29500, false);
  id.master_addr = "no-such-host.invalid";
  try {
    connectStore(id, {milliseconds(500), "job"});
    FAIL() << "resolved an invalid host";
  } catch (const InputError& e) {
    EXPECT_THAT(errorMessage(e), HasSubstr("'no-such-host.invalid' (no-such-host.invalid:29500) does not resolve"));
  }
}

TEST(RendezvousTest, APortInUseIsNamed) {
  auto taken = hostStore("127.0.0.1", 0, 1, std::chrono::seconds(10));
  const int port = taken->getPort();
  try {
    connectStore(identityOf(0, 2, port, false), {milliseconds(500), "job"});
    FAIL() << "hosted a second store on port " << port;
  } catch (const InputError& e) {
    EXPECT_THAT(errorMessage(e),
                HasSubstr("cannot host the store on port " + std::to_string(port) + ": the port is already in use"));
  }
}

TEST(RendezvousTest, EndpointIsRequiredForSeveralRanksButNotForOne) {
  auto alone = connectStore(RankIdentity{}, {milliseconds(500), "job"});
  alone->set("k", bytes("v"));
  EXPECT_EQ(alone->get("k"), bytes("v"));
  RankIdentity two = identityOf(1, 2, -1, false);
  two.master_addr.clear();
  try {
    connectStore(two, {milliseconds(500), "job"});
    FAIL() << "no endpoint accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(errorMessage(e), HasSubstr("has no store endpoint: set MASTER_ADDR and MASTER_PORT"));
  }
}

}  // namespace
}  // namespace loom::dist
