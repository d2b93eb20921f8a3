// Outer optimizers under elastic training (outer_optimizer.h OuterComms,
// snapshotState()): replicas of different sizes whose leaders exchange and fan
// out, in-memory snapshots restored over rebuilt communicators, and NoLoCo
// groups when group_size no longer divides the replicas.
#include "optim/outer/outer_optimizer.h"
#include "optim/outer/pairing.h"
#include "runtime/core/error.h"
#include "tests/optim/outer_test_util.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace loom::optim::outer {
namespace {

using test::flatOf;
using test::gatherAll;
using test::identicalOnAllRanks;
using test::setFlat;
using test::smallParams;

constexpr int64_t kSteps = 12;
constexpr uint64_t kSeed = 3;

// Ranks grouped into replicas: rank r belongs to replica_of[r]; replicas hold
// consecutive ranks and a replica's first rank is its leader.
struct Layout {
  std::vector<int> replica_of;

  int ranks() const { return static_cast<int>(replica_of.size()); }
  std::vector<int> members(int replica) const {
    std::vector<int> out;
    for (int r = 0; r < ranks(); ++r) {
      if (replica_of[r] == replica) out.push_back(r);
    }
    return out;
  }
  std::vector<int> leaders() const {
    std::vector<int> out;
    for (int r = 0; r < ranks(); ++r) {
      if (r == 0 || replica_of[r] != replica_of[r - 1]) out.push_back(r);
    }
    return out;
  }
};
const Layout kOnePerReplica{{0, 1}};
const Layout kUneven{{0, 0, 1}};  // replica 0 = ranks 0 and 1, replica 1 = rank 2

// One rank's communicators for one optimizer, split afresh from `world` (every rank calls).
struct RankComms {
  std::unique_ptr<dist::Communicator> exchange;  ///< leaders only
  std::unique_ptr<dist::Communicator> replica;
  OuterComms outer() const { return {exchange.get(), replica.get()}; }
};
RankComms splitFor(dist::Communicator& world, const Layout& layout) {
  const std::vector<int> members = layout.members(layout.replica_of[world.rank()]);
  RankComms comms;
  comms.replica = world.split(members);
  if (members.front() == world.rank()) comms.exchange = world.split(layout.leaders());
  return comms;
}

// What a replica's inner steps do: a move drawn from (replica, step), the same on each of its ranks.
void train(OuterOptimizer& outer, const NamedTensors& params, int replica, int64_t from, int64_t to) {
  for (int64_t step = from; step <= to; ++step) {
    const at::Generator gen = at::detail::createCPUGenerator(1000 * (replica + 1) + step);
    setFlat(params, flatOf(params) + at::randn({17}, gen) * 0.1);
    outer.afterInnerStep(step);
  }
}

NamedTensors cloned(const NamedTensors& state) {
  NamedTensors out;
  for (const auto& [name, t] : state) out.emplace_back(name, t.clone());
  return out;
}

bool holds(const NamedTensors& state, const std::string& name) {
  return std::any_of(state.begin(), state.end(), [&](const auto& entry) { return entry.first == name; });
}

// An algorithm, and a step at which to snapshot it: between syncs, where the
// delayed and streaming schedules have an exchange in flight.
struct Case {
  const char* name;
  OuterOptions opts;
  int64_t snapshot_step;
  bool in_flight;  ///< whether the snapshot holds outer.sent
};

std::vector<Case> cases() {
  OuterOptions sync = test::diloco(2, 0.7, 0.9);
  sync.codec = PseudoGradientCodec::kFp16;
  OuterOptions streaming = test::diloco(4, 0.7, 0.9);
  streaming.fragments = 2;
  streaming.fragment_delay = 1;  // fragments are sent at steps 1, 3, 5, ... and applied one step later
  streaming.fragment_alpha = 0.5;
  OuterOptions delayed = test::diloco(3, 0.7, 0.9);
  delayed.delayed = true;
  delayed.codec = PseudoGradientCodec::kUint8Lut;
  OuterOptions co2;
  co2.algorithm = OuterAlgorithm::kCo2;
  co2.sync_every = 2;
  co2.lr = 0.7;
  co2.momentum = 0.5;
  co2.staleness_penalty = 2;
  co2.clip = 0.05;
  return {{"DiLoCo", sync, 5, false},
          {"StreamingDiLoCo", streaming, 5, true},
          {"DelayedDiLoCo", delayed, 7, true},
          {"Co2", co2, 5, true},
          {"NoLoCo", test::noloco(2, 0.7, 0.5, 0.7, 2), 5, false}};
}

// Replicas of sizes {2, 1}, whose leaders exchange and fan out, end every step
// with bit-identical members and finish exactly where the default layout (one
// rank per replica) does.
TEST(OuterElasticTest, LeadersFanOutToUnevenReplicasLikeTheDefaultLayout) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::vector<at::Tensor> expected(2);
    std::vector<int64_t> expected_syncs(2);
    loom::test::runRanks(2, [&](int rank, dist::Communicator& world) {
      const NamedTensors params = smallParams(7);
      auto exchange = test::splitAll(world);
      auto outer = makeOuterOptimizer(params, *exchange, c.opts, kSeed);
      train(*outer, params, rank, 1, kSteps);
      outer->finish();
      expected[rank] = flatOf(params);
      expected_syncs[rank] = outer->stats().syncs;
    });
    loom::test::runRanks(kUneven.ranks(), [&](int rank, dist::Communicator& world) {
      const int replica = kUneven.replica_of[rank];
      const NamedTensors params = smallParams(7);
      RankComms comms = splitFor(world, kUneven);
      auto outer = makeOuterOptimizer(params, comms.outer(), c.opts, kSeed);
      for (int64_t step = 1; step <= kSteps; ++step) {
        train(*outer, params, replica, step, step);
        // The replica's communicator is shared with the caller, as with a trainer's gradient reduction.
        ASSERT_TRUE(identicalOnAllRanks(*comms.replica, flatOf(params))) << "step " << step;
      }
      outer->finish();
      EXPECT_TRUE(at::equal(flatOf(params), expected[replica]));
      EXPECT_EQ(outer->stats().syncs, expected_syncs[replica]);
    });
  }
}

TEST(OuterElasticTest, ExchangeCommunicatorOnlyOnTheReplicaLeader) {
  loom::test::runRanks(2, [](int rank, dist::Communicator& world) {
    auto replica = test::splitAll(world);  // one replica of both ranks
    auto self = dist::makeSelfCommunicator();
    const OuterComms swapped{rank == 0 ? nullptr : self.get(), replica.get()};
    EXPECT_THROW(makeOuterOptimizer(smallParams(1), swapped, test::diloco(2, 0.7, 0.9), 0), InputError);
    EXPECT_THROW(makeOuterOptimizer(smallParams(1), OuterComms{nullptr, nullptr}, test::diloco(2, 0.7, 0.9), 0),
                 InputError);
  });
}

// Run to kSteps with a snapshot taken at c.snapshot_step; then rebuild every
// replica's communicators and optimizer from that snapshot and run the same
// steps again: the result is the uninterrupted one, bit for bit.
void expectSnapshotResumesExactly(const Case& c, const Layout& layout) {
  loom::test::runRanks(layout.ranks(), [&](int rank, dist::Communicator& world) {
    const int replica = layout.replica_of[rank];
    const NamedTensors params = smallParams(7);
    RankComms before = splitFor(world, layout);
    auto outer = makeOuterOptimizer(params, before.outer(), c.opts, kSeed);
    train(*outer, params, replica, 1, c.snapshot_step);
    const NamedTensors views = outer->snapshotState();
    const NamedTensors saved = cloned(views);
    const at::Tensor saved_params = flatOf(params).clone();
    EXPECT_EQ(holds(saved, "outer.sent"), c.in_flight);
    EXPECT_EQ(holds(saved, "outer.sent_range"), c.in_flight);
    // The exchange in flight lands in its buffer; the snapshot's views must not move with it.
    outer->stateTensors();
    for (size_t i = 0; i < views.size(); ++i)
      EXPECT_TRUE(at::equal(views[i].second, saved[i].second)) << views[i].first;
    train(*outer, params, replica, c.snapshot_step + 1, kSteps);
    outer->finish();
    const NamedTensors expected_state = cloned(outer->stateTensors());

    const NamedTensors restored = smallParams(99);
    setFlat(restored, saved_params);
    RankComms after = splitFor(world, layout);
    auto resumed = makeOuterOptimizer(restored, after.outer(), c.opts, kSeed);
    resumed->loadState(saved);
    train(*resumed, restored, replica, c.snapshot_step + 1, kSteps);
    resumed->finish();
    EXPECT_TRUE(at::equal(flatOf(restored), flatOf(params)));
    const NamedTensors state = resumed->stateTensors();
    ASSERT_EQ(state.size(), expected_state.size());
    for (size_t i = 0; i < state.size(); ++i) {
      EXPECT_EQ(state[i].first, expected_state[i].first);
      EXPECT_TRUE(at::equal(state[i].second, expected_state[i].second)) << state[i].first;
    }
  });
}

TEST(OuterElasticTest, SnapshotRestoredOverNewCommunicatorsContinuesBitForBit) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    expectSnapshotResumesExactly(c, kOnePerReplica);
  }
}

TEST(OuterElasticTest, SnapshotOfUnevenReplicasContinuesBitForBit) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    expectSnapshotResumesExactly(c, kUneven);
  }
}

// An average loaded from a disk checkpoint (outer.pending) has no exchange to
// restart: a snapshot hands it back as outer.pending, and resuming from that
// snapshot continues like resuming from the checkpoint.
TEST(OuterElasticTest, SnapshotAfterLoadingAPendingAverageKeepsIt) {
  auto self = dist::makeSelfCommunicator();
  OuterOptions opts = test::diloco(2, 0.7, 0.9);
  opts.delayed = true;
  const NamedTensors params = smallParams(5);
  auto outer = makeOuterOptimizer(params, *self, opts, 0);
  train(*outer, params, 0, 1, 3);
  const NamedTensors checkpoint = cloned(outer->stateTensors());
  ASSERT_TRUE(holds(checkpoint, "outer.pending"));
  const at::Tensor at_checkpoint = flatOf(params).clone();

  std::vector<at::Tensor> results;
  for (bool through_snapshot : {false, true}) {
    const NamedTensors resumed_params = smallParams(5);
    setFlat(resumed_params, at_checkpoint);
    auto resumed = makeOuterOptimizer(resumed_params, *self, opts, 0);
    resumed->loadState(checkpoint);
    if (through_snapshot) {
      const NamedTensors snapshot = cloned(resumed->snapshotState());
      EXPECT_FALSE(holds(snapshot, "outer.sent"));
      ASSERT_TRUE(holds(snapshot, "outer.pending"));
      resumed = makeOuterOptimizer(resumed_params, *self, opts, 0);
      resumed->loadState(snapshot);
    }
    train(*resumed, resumed_params, 0, 4, 8);
    resumed->finish();
    results.push_back(flatOf(resumed_params));
  }
  train(*outer, params, 0, 4, 8);
  outer->finish();
  EXPECT_TRUE(at::equal(results[0], flatOf(params)));
  EXPECT_TRUE(at::equal(results[1], flatOf(params)));
}

// k replicas in groups of n where n need not divide k: G = max(1, k / n)
// groups, perm[i] in group i % G, so groups partition the replicas, differ in
// size by at most one and hold n to 2n - 1 members (all k when k < n).
TEST(OuterElasticTest, NoLoCoGroupsAbsorbAReplicaCountThatGroupSizeDoesNotDivide) {
  for (const auto& [k, n] : std::vector<std::pair<int, int>>{{3, 2}, {5, 2}, {7, 3}, {1, 2}, {4, 2}}) {
    SCOPED_TRACE("k " + std::to_string(k) + ", n " + std::to_string(n));
    const size_t count = static_cast<size_t>(std::max(1, k / n));
    for (int64_t step = 0; step < 20; ++step) {
      const auto groups = replicaGroups(42, step, k, n);
      EXPECT_EQ(groups, replicaGroups(42, step, k, n));
      ASSERT_EQ(groups.size(), count);
      const std::vector<int> perm = replicaPermutation(42, step, k);
      std::set<int> seen;
      size_t smallest = groups[0].size();
      size_t largest = groups[0].size();
      for (size_t j = 0; j < count; ++j) {
        const auto& g = groups[j];
        EXPECT_TRUE(std::is_sorted(g.begin(), g.end()));
        smallest = std::min(smallest, g.size());
        largest = std::max(largest, g.size());
        for (int r : g) EXPECT_TRUE(seen.insert(r).second) << "replica " << r << " in two groups";
        for (size_t i = j; i < perm.size(); i += count) {
          EXPECT_NE(std::find(g.begin(), g.end(), perm[i]), g.end()) << "perm[" << i << "] outside group " << j;
        }
      }
      EXPECT_EQ(seen.size(), static_cast<size_t>(k));
      EXPECT_LE(largest - smallest, 1u);
      EXPECT_GE(static_cast<int>(smallest), std::min(k, n));
      EXPECT_LE(static_cast<int>(largest), k < n ? k : 2 * n - 1);
      for (int r = 0; r < k; ++r) {
        const auto mine = groupOf(42, step, k, n, r);
        EXPECT_NE(std::find(groups.begin(), groups.end(), mine), groups.end());
        EXPECT_NE(std::find(mine.begin(), mine.end(), r), mine.end());
      }
    }
  }
  EXPECT_THROW(replicaGroups(42, 0, 4, 0), InputError);
}

// group_size 2 over 3 replicas (one group of three) and 5 (groups of two and
// three): with momentum 0 and lr = consensus = 1 a sync leaves each replica at
// its group's mean.
TEST(OuterElasticTest, NoLoCoRunsWithReplicasThatGroupSizeDoesNotDivide) {
  for (int k : {3, 5}) {
    loom::test::runRanks(k, [k](int rank, dist::Communicator& world) {
      const NamedTensors params = smallParams(41 + rank);
      auto exchange = test::splitAll(world);
      auto outer = makeOuterOptimizer(params, *exchange, test::noloco(2, 1.0, 0.0, 1.0, 2), 5);
      const at::Generator gen = at::detail::createCPUGenerator(600 + rank);
      for (int64_t step = 1; step <= 8; ++step) {
        setFlat(params, flatOf(params) + at::randn({17}, gen));
        const std::vector<at::Tensor> locals = gatherAll(world, flatOf(params));
        outer->afterInnerStep(step);
        if (step % 2 != 0) continue;
        at::Tensor mean = at::zeros({17});
        const std::vector<int> group = groupOf(5, step / 2, k, 2, rank);
        for (int member : group) mean += locals[member] / static_cast<double>(group.size());
        EXPECT_TRUE(at::allclose(flatOf(params), mean, 1e-5, 1e-6)) << "step " << step;
      }
      outer->finish();
      EXPECT_TRUE(at::isfinite(flatOf(params)).all().item<bool>());
      EXPECT_EQ(outer->stats().syncs, 4);
    });
  }
}

}  // namespace
}  // namespace loom::optim::outer
