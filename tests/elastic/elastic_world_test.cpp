// ElasticWorld with in-process ranks (threads sharing one HashStore, real Gloo
// communicators): a lost member is excluded by the next generation and the
// survivors' collectives work again; a replacement is admitted at a step
// boundary; the quorum rules decide between going on, regrouping below the
// minimum to checkpoint, and stopping (split brain). The same code runs
// across processes in tests/train/trainer/elastic_chaos_test.cpp.
#include "elastic/elastic_world.h"

#include "runtime/core/error.h"
#include "runtime/dist/elastic_keys.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <iostream>
#include <memory>
#include <thread>

namespace loom::elastic {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
namespace keys = dist::elastic_keys;

class ElasticWorldTest : public ::testing::Test {
 protected:
  ElasticWorldOptions options(int id, int initial_world, int min_ranks, bool joiner = false) const {
    ElasticWorldOptions opts;
    opts.id = id;
    opts.initial_world = initial_world;
    opts.joiner = joiner;
    opts.elastic.policy = ElasticPolicy::kReplace;
    opts.elastic.min_ranks = min_ranks;
    opts.elastic.max_ranks = 3;  // room for one joiner beyond two starting members
    opts.elastic.heartbeat_interval_s = 0.05;
    opts.elastic.heartbeat_timeout_s = 2;
    opts.elastic.rebuild_timeout_s = 20;
    opts.elastic.poll_interval_s = 0.01;
    opts.op_timeout = 30s;
    return opts;
  }

  /// Starts `n` initial members at once (construction is collective).
  std::vector<std::unique_ptr<ElasticWorld>> startMembers(int n, int min_ranks) {
    std::vector<std::future<std::unique_ptr<ElasticWorld>>> starting;
    for (int id = 0; id < n; ++id) {
      starting.push_back(std::async(std::launch::async, [this, id, n, min_ranks] {
        return std::make_unique<ElasticWorld>(store_, options(id, n, min_ranks), log_);
      }));
    }
    std::vector<std::unique_ptr<ElasticWorld>> worlds;
    for (auto& s : starting) worlds.push_back(s.get());
    return worlds;
  }

  /// What the launcher does when worker `id` exits: report it.
  void reportDeath(int id) {
    elastic_->set(keys::dead(id), std::vector<uint8_t>{'x'});
    elastic_->add(keys::kFailures, 1);
  }

  /// Sum of (rank + 1) over `world`'s main communicator, run on every member.
  static double sumOfRanks(ElasticWorld& world) {
    at::Tensor t = at::full({4}, world.main().rank() + 1.0, at::kDouble);
    world.main().allReduce(t, dist::ReduceOp::kSum)->wait();
    return t[0].item<double>();
  }

  c10::intrusive_ptr<c10d::Store> store_ = c10::make_intrusive<c10d::HashStore>();
  c10::intrusive_ptr<c10d::Store> elastic_ = c10::make_intrusive<c10d::PrefixStore>(keys::kWorkerPrefix, store_);
  std::ostringstream log_text_;
  Logger log_{log_text_, LoggerOptions{0, 1, LogLevel::kWarning}};
};

TEST_F(ElasticWorldTest, SurvivorsExcludeALostMemberAndCommunicateAgain) {
  auto worlds = startMembers(3, 2);
  EXPECT_EQ(worlds[0]->membership().generation, 0);
  std::vector<std::future<double>> sums;
  for (auto& w : worlds) sums.push_back(std::async(std::launch::async, [&w] { return sumOfRanks(*w); }));
  for (auto& s : sums) EXPECT_EQ(s.get(), 6.0);

  // Worker 2 dies: its connections close and the launcher reports it.
  worlds[2].reset();
  reportDeath(2);
  std::vector<std::future<GenerationChange>> changes;
  for (int id : {0, 1}) {
    changes.push_back(std::async(std::launch::async, [&, id] {
      ElasticWorld& w = *worlds[static_cast<size_t>(id)];
      try {
        sumOfRanks(w);  // fails: a member is gone (or the watchdog aborted it first)
        ADD_FAILURE() << "an all-reduce with a lost member succeeded";
      } catch (const PeerLostError&) {
      }
      return w.recover("test");
    }));
  }
  for (auto& c : changes) {
    const GenerationChange change = c.get();
    EXPECT_EQ(change.current.generation, 1);
    EXPECT_THAT(change.current.members, ElementsAre(0, 1));
    EXPECT_THAT(change.lost, ElementsAre(2));
    EXPECT_FALSE(change.below_minimum);
  }
  std::vector<std::future<double>> again;
  for (int id : {0, 1}) again.push_back(std::async(std::launch::async, [&, id] { return sumOfRanks(*worlds[id]); }));
  for (auto& s : again) EXPECT_EQ(s.get(), 3.0);
}

TEST_F(ElasticWorldTest, AJoinerIsAdmittedAtAStepBoundaryWhileThereIsRoom) {
  auto worlds = startMembers(2, 1);
  // The launcher allocates the replacement's id: initial world + 0.
  elastic_->add(keys::kNextId, 1);
  auto joiner = std::async(std::launch::async, [this] {
    return std::make_unique<ElasticWorld>(store_, options(2, 2, 1, /*joiner=*/true), log_);
  });
  // The members notice it (the step loop would vote on this flag), then admit it together.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!(worlds[0]->joinersWaiting() && worlds[1]->joinersWaiting()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(worlds[0]->joinersWaiting() && worlds[1]->joinersWaiting());
  std::vector<std::future<GenerationChange>> admitted;
  for (auto& w : worlds) admitted.push_back(std::async(std::launch::async, [&w] { return w->admitJoiners(); }));
  for (auto& a : admitted) {
    const GenerationChange change = a.get();
    EXPECT_THAT(change.current.members, ElementsAre(0, 1, 2));
    EXPECT_THAT(change.joined, ElementsAre(2));
  }
  std::unique_ptr<ElasticWorld> third = joiner.get();
  EXPECT_EQ(third->membership().generation, 1);
  EXPECT_THAT(third->entry().joined, ElementsAre(2));
  EXPECT_FALSE(worlds[0]->joinersWaiting());
  std::vector<std::future<double>> sums;
  for (ElasticWorld* w : {worlds[0].get(), worlds[1].get(), third.get()}) {
    sums.push_back(std::async(std::launch::async, [w] { return sumOfRanks(*w); }));
  }
  for (auto& s : sums) EXPECT_EQ(s.get(), 6.0);
}

TEST_F(ElasticWorldTest, BelowTheMinimumAMajorityRegroupsToCheckpoint) {
  auto worlds = startMembers(3, 3);
  worlds[2].reset();
  reportDeath(2);
  std::vector<std::future<GenerationChange>> changes;
  for (int id : {0, 1}) {
    changes.push_back(std::async(std::launch::async, [&, id] { return worlds[id]->recover("test"); }));
  }
  for (auto& c : changes) {
    const GenerationChange change = c.get();
    EXPECT_TRUE(change.below_minimum);
    EXPECT_THAT(change.current.members, ElementsAre(0, 1));
  }
}

TEST_F(ElasticWorldTest, HalfOfTheMembersStopForTheSplitBrainGuard) {
  auto worlds = startMembers(4, 1);
  worlds[2].reset();
  worlds[3].reset();
  reportDeath(2);
  reportDeath(3);
  std::vector<std::future<std::string>> outcomes;
  for (int id : {0, 1}) {
    outcomes.push_back(std::async(std::launch::async, [&, id] {
      try {
        worlds[id]->recover("test");
      } catch (const QuorumLostError& e) {
        return std::string(e.what());
      }
      return std::string("recovered");
    }));
  }
  for (auto& o : outcomes) {
    const std::string outcome = o.get();
    EXPECT_THAT(outcome, HasSubstr("lost worker(s) 2, 3"));
    EXPECT_THAT(outcome, HasSubstr("majority"));
  }
}

}  // namespace
}  // namespace loom::elastic
