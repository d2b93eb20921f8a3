// Membership generations over a HashStore (concurrent proposers agree, stale
// proposals are rejected, waits time out naming the generation and ranks) and
// the quorum rules (parallel_elastic.md §6 test 21).
#include "elastic/membership.h"

#include "runtime/core/error.h"
#include "tests/support/error_of.h"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

namespace loom::elastic {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using loom::test::errorOf;

TEST(MembershipTest, InitializeKeepsTheFirstMembership) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  MembershipStore ms(store, "job");
  const Membership first = ms.initialize({3, 1, 0, 2});
  EXPECT_EQ(first.generation, 0);
  EXPECT_THAT(first.members, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(ms.initialize({0, 1}), first);
  EXPECT_EQ(ms.current(), first);
  EXPECT_EQ(first.describe(), "generation 0 (ranks 0, 1, 2, 3)");
}

TEST(MembershipTest, CurrentBeforeInitializeSaysSo) {
  MembershipStore ms(c10::make_intrusive<c10d::HashStore>(), "job");
  EXPECT_THAT(errorOf<InputError>([&] { ms.current(); }), HasSubstr("initialize()"));
}

TEST(MembershipTest, ConcurrentProposersAgreeOnOneWinner) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  MembershipStore(store, "job").initialize({0, 1, 2, 3, 4});
  for (int64_t round = 0; round < 20; ++round) {
    std::atomic<int> ready{0};
    std::vector<std::future<Proposal>> proposals;
    for (int t = 0; t < 4; ++t) {
      proposals.push_back(std::async(std::launch::async, [&, t] {
        MembershipStore ms(store, "job");  // each survivor has its own view of the store
        ready.fetch_add(1);
        while (ready.load() < 4) std::this_thread::yield();
        return ms.proposeNext(round, {0, 1, t + 2});  // distinct proposals reveal the winner
      }));
    }
    int accepted = 0;
    std::vector<Membership> seen;
    for (auto& p : proposals) {
      const Proposal proposal = p.get();
      accepted += proposal.accepted ? 1 : 0;
      seen.push_back(proposal.membership);
    }
    EXPECT_EQ(accepted, 1) << "round " << round;
    for (const Membership& m : seen) EXPECT_EQ(m, seen.front()) << "round " << round;
    EXPECT_EQ(seen.front().generation, round + 1);
    EXPECT_EQ(MembershipStore(store, "job").current(), seen.front());
  }
}

TEST(MembershipTest, StaleProposalIsRejectedWithTheNewerMembership) {
  MembershipStore ms(c10::make_intrusive<c10d::HashStore>(), "job");
  ms.initialize({0, 1, 2, 3});
  const Proposal won = ms.proposeNext(0, {0, 1, 3});
  EXPECT_TRUE(won.accepted);
  EXPECT_EQ(won.membership, (Membership{1, {0, 1, 3}}));

  const Proposal stale = ms.proposeNext(0, {0, 1, 2});
  EXPECT_FALSE(stale.accepted);
  EXPECT_EQ(stale.membership, won.membership);
  EXPECT_EQ(ms.current(), won.membership);

  EXPECT_THAT(errorOf<InputError>([&] { ms.proposeNext(5, {0}); }),
              HasSubstr("proposal for generation 6 but the store is only at generation 1"));
  EXPECT_THAT(errorOf<InputError>([&] { ms.proposeNext(1, {0, 3, 0}); }), HasSubstr("lists member 0 twice"));
  EXPECT_THAT(errorOf<InputError>([&] { ms.proposeNext(1, {}); }), HasSubstr("no members"));
}

TEST(MembershipTest, WaitForGenerationReturnsOnceProposed) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  MembershipStore ms(store, "job");
  ms.initialize({0, 1, 2});
  auto proposer = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(50ms);
    return MembershipStore(store, "job").proposeNext(0, {0, 2});
  });
  EXPECT_EQ(ms.waitForGeneration(1, 2s), (Membership{1, {0, 2}}));
  EXPECT_TRUE(proposer.get().accepted);
  EXPECT_EQ(ms.waitForGeneration(0, 10ms).generation, 1);  // already past it
}

TEST(MembershipTest, WaitForGenerationTimeoutNamesGenerationAndRanks) {
  MembershipStore ms(c10::make_intrusive<c10d::HashStore>(), "job");
  ms.initialize({0, 1, 2, 3});
  const auto start = std::chrono::steady_clock::now();
  const std::string message = errorOf<PeerLostError>([&] { ms.waitForGeneration(1, 100ms); });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_THAT(message, HasSubstr("waiting for generation 1 at job/generation timed out after 100 ms"));
  EXPECT_THAT(message, HasSubstr("still holds generation 0 (ranks 0, 1, 2, 3)"));
}

TEST(MembershipTest, EachGenerationHasItsOwnKeys) {
  auto store = c10::make_intrusive<c10d::HashStore>();
  MembershipStore ms(store, "job");
  EXPECT_EQ(ms.generationPrefix(3), "job/gen/3");
  ms.storeFor(1)->set("pg/0", std::vector<uint8_t>{'x'});
  EXPECT_TRUE(store->check({"job/gen/1/pg/0"}));
  EXPECT_FALSE(ms.storeFor(2)->check({"pg/0"}));
}

TEST(QuorumTest, FastPathWhenEveryPreviousMemberIsHealthy) {
  const QuorumDecision d = decideQuorum({0, 1, 2, 3}, {3, 2, 1, 0}, 2);
  EXPECT_TRUE(d.proceed);
  EXPECT_TRUE(d.fast);
  EXPECT_THAT(d.members, ElementsAre(0, 1, 2, 3));
  EXPECT_THAT(d.lost, ElementsAre());
  EXPECT_THAT(d.message, HasSubstr("fast path"));

  const QuorumDecision grown = decideQuorum({0, 1, 2}, {0, 1, 2, 7}, 2);
  EXPECT_TRUE(grown.proceed && grown.fast);
  EXPECT_THAT(grown.members, ElementsAre(0, 1, 2, 7));
  EXPECT_THAT(grown.joined, ElementsAre(7));
}

TEST(QuorumTest, OneLostRankLeavesAQuorumOfTheRest) {
  const QuorumDecision d = decideQuorum({0, 1, 2, 3}, {0, 1, 3}, 2);
  EXPECT_TRUE(d.proceed);
  EXPECT_FALSE(d.fast);
  EXPECT_THAT(d.members, ElementsAre(0, 1, 3));
  EXPECT_THAT(d.lost, ElementsAre(2));
  EXPECT_EQ(d.message, "quorum: 3 of 4 previous ranks healthy; lost ranks 2; continuing with ranks 0, 1, 3");
}

TEST(QuorumTest, BelowTheMinimumStops) {
  const QuorumDecision d = decideQuorum({0, 1, 2, 3}, {0, 1, 3}, 4);
  EXPECT_FALSE(d.proceed);
  EXPECT_THAT(d.members, ElementsAre());
  EXPECT_THAT(d.message, HasSubstr("only 3 healthy ranks (0, 1, 3), below the minimum of 4; lost ranks 2"));
  EXPECT_FALSE(decideQuorum({0, 1}, {0, 1}, 3).proceed);  // the minimum holds on the fast path too
  EXPECT_THAT(errorOf<InputError>([] { decideQuorum({0}, {0}, 0); }), HasSubstr("at least 1"));
}

TEST(QuorumTest, SplitBrainGuardNeedsAStrictMajorityOfThePreviousMembers) {
  const QuorumDecision half = decideQuorum({0, 1, 2, 3}, {0, 1}, 1);
  EXPECT_FALSE(half.proceed);
  EXPECT_THAT(half.lost, ElementsAre(2, 3));
  EXPECT_THAT(half.message, HasSubstr("only 2 of the 4 previous ranks are healthy"));
  EXPECT_THAT(half.message, HasSubstr("split-brain guard"));
  // The other half of the partition decides the same.
  EXPECT_FALSE(decideQuorum({0, 1, 2, 3}, {2, 3}, 1).proceed);
  // Joiners do not count toward the majority.
  EXPECT_FALSE(decideQuorum({0, 1, 2, 3}, {0, 1, 8, 9}, 1).proceed);
  // A strict majority proceeds: 3 of 5.
  EXPECT_TRUE(decideQuorum({0, 1, 2, 3, 4}, {0, 2, 4}, 1).proceed);
}

}  // namespace
}  // namespace loom::elastic
