#include "parallel/hdp_plan.h"

#include "runtime/core/error.h"
#include "tests/support/error_of.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>

namespace loom::parallel {
namespace {

/// splitmix64: a generator whose output is fixed by its definition (std::
/// distributions differ between standard libraries, so fixed seeds would not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int64_t uniform(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                                        // Box-Muller
    const double u = 1.0 - unit();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * 3.141592653589793 * unit());
  }

 private:
  uint64_t state_;
};

/// Long-tail lengths: lognormal(log(median), sigma) clipped to [16, max_length],
/// drawn until they sum to at least `budget` tokens.
std::vector<int64_t> lognormalBatch(Rng& rng, double median, double sigma, int64_t max_length, int64_t budget) {
  std::vector<int64_t> lengths;
  int64_t total = 0;
  while (total < budget) {
    const double x = median * std::exp(sigma * rng.normal());
    const int64_t length = std::clamp<int64_t>(static_cast<int64_t>(x), 16, max_length);
    lengths.push_back(length);
    total += length;
  }
  return lengths;
}

double costOf(int64_t length, int ranks, const HdpOptions& opts) {
  const double l = static_cast<double>(length);
  return (l * l * opts.quadratic_weight + l * opts.linear_weight) / ranks;
}

bool isPowerOfTwo(int n) {
  return n >= 1 && (n & (n - 1)) == 0;
}

/// Does placement `p` fit into `wave` of the final plan (ignoring p itself)?
bool fitsIn(const Wave& wave, const Placement& p, const std::vector<int64_t>& lengths, int64_t capacity) {
  const int64_t tokens = (lengths[static_cast<size_t>(p.sequence)] - 1) / p.ranks + 1;
  for (const Placement& q : wave.placements) {
    const bool overlap = q.first_rank < p.first_rank + p.ranks && p.first_rank < q.first_rank + q.ranks;
    if (!overlap) continue;
    if (p.ranks > 1 || q.ranks > 1) return false;
  }
  if (p.ranks > 1) return true;
  int64_t used = 0;
  for (const Placement& q : wave.placements) {
    if (q.first_rank == p.first_rank) used += lengths[static_cast<size_t>(q.sequence)];
  }
  return used + tokens <= capacity;
}

/// Simulated step time when every rank runs its waves in order and a group
/// starts once all its members are free: the critical path max(rank_cost) hides.
double makespan(const HdpPlan& plan, const std::vector<int64_t>& lengths, const HdpOptions& opts) {
  std::vector<double> finish(static_cast<size_t>(plan.pool), 0.0);
  for (const Wave& wave : plan.waves) {
    for (const Placement& p : wave.placements) {
      const auto begin = finish.begin() + p.first_rank, end = begin + p.ranks;
      const double done =
          *std::max_element(begin, end) + costOf(lengths[static_cast<size_t>(p.sequence)], p.ranks, opts);
      std::fill(begin, end, done);
    }
  }
  return *std::max_element(finish.begin(), finish.end());
}

/// Every documented guarantee of planHdp on one input; "" when all hold, else the first broken one.
std::string checkPlan(const std::vector<int64_t>& lengths, const HdpOptions& opts, const HdpPlan& plan) {
  std::ostringstream err;
  const int pool = opts.pool;
  if (plan.pool != pool) return "pool not recorded";
  if (static_cast<int>(plan.rank_cost.size()) != pool) return "rank_cost has the wrong size";
  int64_t global_tokens = 0;
  for (int64_t length : lengths) global_tokens += length;
  if (plan.global_tokens != global_tokens) return "global_tokens wrong";

  std::vector<int> seen(lengths.size(), 0);
  std::vector<std::vector<int64_t>> sequences_on(static_cast<size_t>(pool));  // per rank
  std::vector<double> cost(static_cast<size_t>(pool), 0.0);
  for (size_t w = 0; w < plan.waves.size(); ++w) {
    const Wave& wave = plan.waves[w];
    if (wave.placements.empty()) return "empty wave " + std::to_string(w);
    std::vector<int64_t> tokens(static_cast<size_t>(pool), 0);
    std::vector<int> groups(static_cast<size_t>(pool), 0), shorts(static_cast<size_t>(pool), 0);
    for (const Placement& p : wave.placements) {
      if (p.sequence < 0 || p.sequence >= static_cast<int64_t>(lengths.size())) return "bad sequence index";
      ++seen[static_cast<size_t>(p.sequence)];
      const int64_t length = lengths[static_cast<size_t>(p.sequence)];
      if (!isPowerOfTwo(p.ranks)) err << "group of " << p.ranks << " ranks is not a power of two";
      if (p.ranks != hdpGroupSize(length, opts.capacity)) {
        err << "sequence " << p.sequence << " not on the smallest group";
      }
      if (p.first_rank < 0 || p.first_rank % p.ranks != 0) err << "group at " << p.first_rank << " not aligned";
      if (p.first_rank + p.ranks > pool) err << "group [" << p.first_rank << ", +" << p.ranks << ") outside the pool";
      if (!err.str().empty()) return err.str();
      for (int r = p.first_rank; r < p.first_rank + p.ranks; ++r) {
        const size_t rank = static_cast<size_t>(r);
        tokens[rank] += (length - 1) / p.ranks + 1;
        (p.ranks > 1 ? groups : shorts)[rank] += 1;
        sequences_on[rank].push_back(p.sequence);
        cost[rank] += costOf(length, p.ranks, opts);
      }
    }
    for (size_t r = 0; r < tokens.size(); ++r) {
      if (tokens[r] > opts.capacity) err << "wave " << w << " rank " << r << " holds " << tokens[r] << " tokens";
      if (groups[r] > 1 || (groups[r] == 1 && shorts[r] > 0)) err << "wave " << w << " rank " << r << " overlaps";
      if (!err.str().empty()) return err.str();
    }
    // First fit: nothing in this wave would have fitted into an earlier one.
    for (const Placement& p : wave.placements) {
      for (size_t earlier = 0; earlier < w; ++earlier) {
        if (fitsIn(plan.waves[earlier], p, lengths, opts.capacity)) {
          return "sequence " + std::to_string(p.sequence) + " in wave " + std::to_string(w) + " fits in wave " +
                 std::to_string(earlier);
        }
      }
    }
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    if (seen[i] != 1) return "sequence " + std::to_string(i) + " placed " + std::to_string(seen[i]) + " times";
  }
  for (int r = 0; r < pool; ++r) {
    const double expected = cost[static_cast<size_t>(r)], got = plan.rank_cost[static_cast<size_t>(r)];
    if (std::abs(expected - got) > 1e-9 * std::max(1.0, expected)) return "rank_cost wrong on " + std::to_string(r);
    if ((got == 0) != sequences_on[static_cast<size_t>(r)].empty()) return "rank_cost 0 iff no work";
  }
  // No waiting: on every rank the waves where it is in a group come first (so its short
  // sequences come after all its groups), and the step takes exactly max(rank_cost).
  for (int r = 0; r < pool; ++r) {
    bool free_before = false;
    for (const Wave& wave : plan.waves) {
      bool grouped = false;
      for (const Placement& p : wave.placements) {
        grouped = grouped || (p.ranks > 1 && p.first_rank <= r && r < p.first_rank + p.ranks);
      }
      if (grouped && free_before) return "rank " + std::to_string(r) + " is in a group after a wave without one";
      free_before = free_before || !grouped;
    }
  }
  const double max_cost = pool > 0 ? *std::max_element(plan.rank_cost.begin(), plan.rank_cost.end()) : 0.0;
  if (std::abs(makespan(plan, lengths, opts) - max_cost) > 1e-9 * max_cost) return "a group waits for a member";
  // No idle block while others double up: if an aligned block of c ranks has no work,
  // each rank holding a sequence of group size <= c holds nothing else.
  for (int c = 1; c <= pool; c *= 2) {
    bool idle_block = false;
    for (int first = 0; first + c <= pool; first += c) {
      bool idle = true;
      for (int r = first; r < first + c; ++r) idle = idle && sequences_on[static_cast<size_t>(r)].empty();
      idle_block = idle_block || idle;
    }
    if (!idle_block) continue;
    for (int r = 0; r < pool; ++r) {
      const std::vector<int64_t>& held = sequences_on[static_cast<size_t>(r)];
      for (int64_t s : held) {
        if (hdpGroupSize(lengths[static_cast<size_t>(s)], opts.capacity) <= c && held.size() > 1) {
          return "rank " + std::to_string(r) + " doubles up while a block of " + std::to_string(c) + " is idle";
        }
      }
    }
  }
  return "";
}

/// The plan with sequence indices replaced by lengths: what a permutation of the input must preserve.
std::vector<std::vector<std::array<int64_t, 3>>> shape(const HdpPlan& plan, const std::vector<int64_t>& lengths) {
  std::vector<std::vector<std::array<int64_t, 3>>> out;
  for (const Wave& wave : plan.waves) {
    out.emplace_back();
    for (const Placement& p : wave.placements) {
      out.back().push_back({lengths[static_cast<size_t>(p.sequence)], p.first_rank, p.ranks});
    }
  }
  return out;
}

HdpOptions options(int pool, int64_t capacity) {
  HdpOptions opts;
  opts.pool = pool;
  opts.capacity = capacity;
  return opts;
}

TEST(HdpPlanTest, GroupSizeIsTheSmallestPowerOfTwoCoveringTheLength) {
  EXPECT_EQ(hdpGroupSize(1, 4096), 1);
  EXPECT_EQ(hdpGroupSize(4096, 4096), 1);
  EXPECT_EQ(hdpGroupSize(4097, 4096), 2);
  EXPECT_EQ(hdpGroupSize(8192, 4096), 2);
  EXPECT_EQ(hdpGroupSize(8193, 4096), 4);  // ceil = 3, rounded up to 4
  EXPECT_EQ(hdpGroupSize(16384, 4096), 4);
  EXPECT_EQ(hdpGroupSize(16385, 4096), 8);
}

// P = 4, C = 4096, cost L^2/c (M = 1e6). Planning order: 16384 (c 4), 6000, 5000 (c 2), 4000,
// 3000, 1000, 1000. Pass 1: 16384 -> ranks 0-3 (67.1M each); 6000 -> block [0,2) (all tie, lowest)
// +18M = 85.1M; 5000 -> [2,4) (67.1M < 85.1M) +12.5M = 79.6M; 4000 -> rank 2 (79.6M, lowest of the
// tie) = 95.6M; 3000 -> rank 3 = 88.6M; the 1000s -> ranks 0, 1 = 86.1M.
// Pass 2: wave 0 = {16384 on 0-3}; wave 1 = {6000 on 0-1, 5000 on 2-3}; wave 2 = the four short ones.
TEST(HdpPlanTest, TheDocumentedWorkedExample) {
  const std::vector<int64_t> lengths = {1000, 5000, 16384, 3000, 6000, 1000, 4000};
  const HdpPlan plan = planHdp(lengths, options(4, 4096));
  ASSERT_EQ(plan.waves.size(), 3u);
  auto placements = [&](size_t w) {
    std::vector<std::array<int64_t, 3>> out;
    for (const Placement& p : plan.waves[w].placements) out.push_back({p.sequence, p.first_rank, p.ranks});
    return out;
  };
  using P = std::array<int64_t, 3>;
  EXPECT_EQ(placements(0), (std::vector<P>{{2, 0, 4}}));
  EXPECT_EQ(placements(1), (std::vector<P>{{4, 0, 2}, {1, 2, 2}}));
  EXPECT_EQ(placements(2), (std::vector<P>{{6, 2, 1}, {3, 3, 1}, {0, 0, 1}, {5, 1, 1}}));
  EXPECT_EQ(plan.global_tokens, 36384);
  EXPECT_EQ(checkPlan(lengths, options(4, 4096), plan), "");
}

TEST(HdpPlanTest, ShortSequencesArePackedUpToTheCapacity) {
  // One rank, C = 10, lengths 6 5 4 3 2 in planning order; first fit: 6 -> w0, 5 -> w1
  // (11 > 10), 4 -> w0 (full), 3 -> w1, 2 -> w1 (full).
  const std::vector<int64_t> lengths = {2, 5, 6, 3, 4};
  const HdpPlan plan = planHdp(lengths, options(1, 10));
  ASSERT_EQ(plan.waves.size(), 2u);
  auto sequences = [&](size_t w) {
    std::vector<int64_t> out;
    for (const Placement& p : plan.waves[w].placements) out.push_back(p.sequence);
    return out;
  };
  EXPECT_EQ(sequences(0), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(sequences(1), (std::vector<int64_t>{1, 3, 0}));
  EXPECT_EQ(checkPlan(lengths, options(1, 10), plan), "");
}

TEST(HdpPlanTest, FewerSequencesThanRanksLeaveRanksEmpty) {
  const std::vector<int64_t> lengths = {100, 300, 200};
  const HdpPlan plan = planHdp(lengths, options(8, 4096));
  ASSERT_EQ(plan.waves.size(), 1u);
  EXPECT_EQ(plan.waves[0].placements.size(), 3u);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(plan.rank_cost[static_cast<size_t>(r)] > 0, r < 3) << "rank " << r;
  EXPECT_EQ(checkPlan(lengths, options(8, 4096), plan), "");

  const HdpPlan none = planHdp({}, options(4, 4096));
  EXPECT_TRUE(none.waves.empty());
  EXPECT_EQ(none.global_tokens, 0);
  EXPECT_EQ(none.rank_cost, std::vector<double>(4, 0.0));
  EXPECT_EQ(none.imbalance(), 1.0);
}

TEST(HdpPlanTest, EnoughWorkFillsEveryRankOfAWave) {
  // 16 sequences of C/2 on 8 ranks: one wave, two per rank.
  const HdpOptions opts = options(8, 4096);
  const HdpPlan halves = planHdp(std::vector<int64_t>(16, 2048), opts);
  ASSERT_EQ(halves.waves.size(), 1u);
  EXPECT_EQ(halves.waves[0].placements.size(), 16u);
  EXPECT_EQ(halves.rank_cost, std::vector<double>(8, 2 * 2048.0 * 2048.0));
  // Two equal 4-rank sequences, then eight short ones: wave 0 is the two groups over
  // all 8 ranks, wave 1 one short sequence on each rank.
  std::vector<int64_t> lengths(8, 1000);
  lengths.push_back(16000);
  lengths.push_back(16000);
  const HdpPlan mixed = planHdp(lengths, opts);
  ASSERT_EQ(mixed.waves.size(), 2u);
  ASSERT_EQ(mixed.waves[0].placements.size(), 2u);
  EXPECT_EQ(mixed.waves[0].placements[0].first_rank, 0);
  EXPECT_EQ(mixed.waves[0].placements[1].first_rank, 4);
  std::vector<int> ranks;
  for (const Placement& p : mixed.waves[1].placements) ranks.push_back(p.first_rank);
  std::sort(ranks.begin(), ranks.end());
  EXPECT_EQ(ranks, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(checkPlan(lengths, opts, mixed), "");
  // With 16000 and 15000 the short ones all go to the lighter block (ranks 4-7, two each):
  // the step's balance, not filling wave 1, decides; ranks 0-3 skip wave 1.
  lengths.back() = 15000;
  const HdpPlan lighter = planHdp(lengths, opts);
  ASSERT_EQ(lighter.waves.size(), 2u);
  for (const Placement& p : lighter.waves[1].placements) EXPECT_GE(p.first_rank, 4);
  EXPECT_EQ(lighter.rank_cost[0], 16000.0 * 16000 / 4);
  EXPECT_EQ(lighter.rank_cost[7], 15000.0 * 15000 / 4 + 2 * 1000.0 * 1000);
  EXPECT_EQ(checkPlan(lengths, opts, lighter), "");
}

TEST(HdpPlanTest, PoolsThatAreNotPowersOfTwoKeepGroupsInside) {
  // P = 6: groups of 4 only on [0,4), of 2 on [0,2), [2,4), [4,6).
  const std::vector<int64_t> lengths = {16000, 16000, 8000, 8000, 8000, 3000, 3000, 3000, 500, 500};
  const HdpOptions opts = options(6, 4096);
  const HdpPlan plan = planHdp(lengths, opts);
  EXPECT_EQ(checkPlan(lengths, opts, plan), "");
  for (const Wave& wave : plan.waves) {
    for (const Placement& p : wave.placements) {
      if (p.ranks == 4) {
        EXPECT_EQ(p.first_rank, 0);
      }
    }
  }
  EXPECT_GT(plan.rank_cost[4], 0);  // the 2-rank sequences use the tail block too
}

TEST(HdpPlanTest, SameInputGivesTheSameHashAndPermutationsOnlyRelabel) {
  Rng rng(7);
  const std::vector<int64_t> lengths = lognormalBatch(rng, 1200, 1.1, 16384, 8 * 4096 * 4);
  const HdpOptions opts = options(8, 4096);
  const HdpPlan a = planHdp(lengths, opts);
  const HdpPlan b = planHdp(lengths, opts);
  EXPECT_EQ(a.hash(), b.hash());
  // The hash is defined byte by byte (FNV-1a, little-endian fields) and the plan by exact
  // rules, so this value holds on every platform; a change here changes what ranks agree on.
  EXPECT_EQ(planHdp({1000, 5000, 16384, 3000, 6000, 1000, 4000}, options(4, 4096)).hash(), 0x59cbaa11f6bd72caull);
  EXPECT_EQ(a.rank_cost, b.rank_cost);

  std::vector<int64_t> permuted = lengths;
  std::reverse(permuted.begin(), permuted.end());
  std::rotate(permuted.begin(), permuted.begin() + 5, permuted.end());
  const HdpPlan c = planHdp(permuted, opts);
  EXPECT_EQ(shape(a, lengths), shape(c, permuted));
  EXPECT_EQ(a.rank_cost, c.rank_cost);
  EXPECT_NE(a.hash(), c.hash());  // the indices differ, and the hash sees them

  // The hash sees every field of a placement.
  HdpPlan d = a;
  d.waves[0].placements[0].first_rank ^= 1;
  EXPECT_NE(d.hash(), a.hash());
  HdpPlan f = a;
  f.waves[0].placements[0].ranks *= 2;
  EXPECT_NE(f.hash(), a.hash());
  HdpPlan e = a;
  e.waves.back().placements.back().sequence += 1;
  EXPECT_NE(e.hash(), a.hash());
}

/// The least possible max rank cost of a step (blocks per sequence tried exhaustively; waves
/// do not constrain a step's per-rank sums). Only for a handful of sequences.
double optimalMaxCost(const std::vector<int64_t>& lengths, const HdpOptions& opts) {
  std::vector<double> load(static_cast<size_t>(opts.pool), 0.0);
  double best = INFINITY;
  std::function<void(size_t)> place = [&](size_t i) {
    const double now = *std::max_element(load.begin(), load.end());
    if (now >= best) return;
    if (i == lengths.size()) {
      best = now;
      return;
    }
    const int ranks = static_cast<int>(hdpGroupSize(lengths[i], opts.capacity));
    const double cost = costOf(lengths[i], ranks, opts);
    for (int first = 0; first + ranks <= opts.pool; first += ranks) {
      for (int r = first; r < first + ranks; ++r) load[static_cast<size_t>(r)] += cost;
      place(i + 1);
      for (int r = first; r < first + ranks; ++r) load[static_cast<size_t>(r)] -= cost;
    }
  };
  place(0);
  return best;
}

// The brief's target: max/mean <= 1.1 on realistic long-tail batches (lognormal lengths, C = 4096, up
// to 16K tokens, a global batch of 4 full waves) over 4 and 8 ranks. Other mixes are only reported,
// with their floor: with groups of the smallest size, one sequence's per-rank cost over the mean rank
// cost is a bound no plan beats (a short 4K sequence in a small batch, say), and with <= 8 sequences
// the ratio to the exhaustive optimum.
TEST(HdpPlanTest, LongTailMixesAreBalanced) {
  struct Mix {
    int pool;
    double median, sigma, linear_weight;
    int waves_of_tokens;  // global batch = pool * C * this
    bool realistic;       // held to <= 1.1 outright
  };
  const Mix mixes[] = {
      {4, 1000, 1.0, 0, 4, true},  {8, 1000, 1.0, 0, 4, true},         {4, 2000, 1.2, 0, 4, true},
      {8, 2000, 1.2, 0, 4, true},  {4, 1000, 1.0, 12 * 4096, 4, true}, {8, 1000, 1.0, 12 * 4096, 4, true},
      {6, 1000, 1.0, 0, 4, false}, {16, 1500, 1.2, 0, 4, false},       {8, 600, 0.8, 0, 2, false},
      {8, 4000, 1.5, 0, 1, false},
  };
  const int64_t capacity = 4096;
  for (const Mix& mix : mixes) {
    HdpOptions opts = options(mix.pool, capacity);
    opts.linear_weight = mix.linear_weight;
    double worst = 0, sum = 0, worst_bound = 0, worst_vs_optimum = 0;
    size_t waves = 0, sequences = 0;
    const int seeds = 20;
    for (int seed = 0; seed < seeds; ++seed) {
      Rng rng(1000 + static_cast<uint64_t>(seed));
      const std::vector<int64_t> lengths = lognormalBatch(
          rng, mix.median, mix.sigma, 16384, static_cast<int64_t>(mix.pool) * capacity * mix.waves_of_tokens);
      const HdpPlan plan = planHdp(lengths, opts);
      ASSERT_EQ(checkPlan(lengths, opts, plan), "");
      const double imbalance = plan.imbalance();
      const double mean = std::accumulate(plan.rank_cost.begin(), plan.rank_cost.end(), 0.0) / mix.pool;
      double bound = 1.0;
      for (int64_t length : lengths) {
        const int ranks = static_cast<int>(hdpGroupSize(length, capacity));
        bound = std::max(bound, costOf(length, ranks, opts) / mean);
      }
      worst = std::max(worst, imbalance);
      worst_bound = std::max(worst_bound, bound);
      if (lengths.size() <= 8) {
        const double max_cost = *std::max_element(plan.rank_cost.begin(), plan.rank_cost.end());
        worst_vs_optimum = std::max(worst_vs_optimum, max_cost / optimalMaxCost(lengths, opts));
      }
      sum += imbalance;
      waves += plan.waves.size();
      sequences += lengths.size();
      const std::string where = "pool " + std::to_string(mix.pool) + " median " + std::to_string(mix.median) +
                                " seed " + std::to_string(seed);
      if (mix.realistic) {
        EXPECT_LE(imbalance, 1.1) << where;
      }
    }
    char optimum[32] = "";
    if (worst_vs_optimum > 0) std::snprintf(optimum, sizeof optimum, ", vs optimum %.3f", worst_vs_optimum);
    std::printf(
        "[ imbalance ] P=%-2d median=%-4.0f sigma=%.1f linear=%-5.0f batch=%dPC (%3zu seqs): max/mean avg %.3f"
        " worst %.3f (floor %.3f%s); waves %.1f\n",
        mix.pool, mix.median, mix.sigma, mix.linear_weight, mix.waves_of_tokens, sequences / seeds, sum / seeds, worst,
        worst_bound, optimum, static_cast<double>(waves) / seeds);
  }
}

TEST(HdpPlanTest, SmallStepsComeCloseToTheOptimum) {
  Rng rng(99);
  double worst = 1, sum = 0;
  int optimal = 0;
  const int trials = 300;
  for (int trial = 0; trial < trials; ++trial) {
    HdpOptions opts = options(static_cast<int>(rng.uniform(2, 8)), 4096);
    int largest = 1;
    while (largest * 2 <= opts.pool) largest *= 2;
    std::vector<int64_t> lengths(static_cast<size_t>(rng.uniform(1, 8)));
    for (int64_t& length : lengths) {
      const double x = 2000 * std::exp(1.2 * rng.normal());
      length = std::clamp<int64_t>(static_cast<int64_t>(x), 16, largest * opts.capacity);
    }
    const HdpPlan plan = planHdp(lengths, opts);
    const double ratio =
        *std::max_element(plan.rank_cost.begin(), plan.rank_cost.end()) / optimalMaxCost(lengths, opts);
    worst = std::max(worst, ratio);
    sum += ratio;
    optimal += ratio <= 1 + 1e-12;
  }
  std::printf(
      "[ optimum   ] %d steps of 1-8 sequences on 2-8 ranks: max rank cost / optimum avg %.3f worst %.3f;"
      " optimal in %d\n",
      trials, sum / trials, worst, optimal);
  EXPECT_LE(worst, 1.1);
}

TEST(HdpPlanTest, InvariantsHoldOnAThousandRandomInputs) {
  Rng rng(2024);
  for (int trial = 0; trial < 1000; ++trial) {
    HdpOptions opts;
    opts.pool = static_cast<int>(rng.uniform(1, 16));
    opts.capacity = rng.uniform(1, 64);
    const int weights = static_cast<int>(rng.uniform(0, 3));
    opts.quadratic_weight = weights == 1 ? 0.0 : (weights == 3 ? 0.37 : 1.0);
    opts.linear_weight = weights == 0 ? 0.0 : (weights == 2 ? 12.0 * 64 : 3.1);
    int largest = 1;
    while (largest * 2 <= opts.pool) largest *= 2;
    const int64_t max_length = largest * opts.capacity;
    const int count = static_cast<int>(rng.uniform(0, 80));
    const int shape_kind = static_cast<int>(rng.uniform(0, 2));
    std::vector<int64_t> lengths;
    for (int i = 0; i < count; ++i) {
      if (shape_kind == 0) {
        lengths.push_back(rng.uniform(1, max_length));
      } else if (shape_kind == 1) {  // long tail
        const double x = opts.capacity * 0.3 * std::exp(1.2 * rng.normal());
        lengths.push_back(std::clamp<int64_t>(static_cast<int64_t>(x), 1, max_length));
      } else {  // few distinct values: many ties
        lengths.push_back(std::array<int64_t, 3>{1, opts.capacity, max_length}[rng.uniform(0, 2)]);
      }
    }
    const HdpPlan plan = planHdp(lengths, opts);
    const std::string broken = checkPlan(lengths, opts, plan);
    ASSERT_EQ(broken, "") << "trial " << trial << " pool " << opts.pool << " capacity " << opts.capacity;
    ASSERT_EQ(planHdp(lengths, opts).hash(), plan.hash()) << "trial " << trial;
    std::vector<int64_t> permuted = lengths;
    for (size_t i = permuted.size(); i > 1; --i) std::swap(permuted[i - 1], permuted[rng.next() % i]);
    const HdpPlan other = planHdp(permuted, opts);
    ASSERT_EQ(shape(plan, lengths), shape(other, permuted)) << "trial " << trial;
    ASSERT_EQ(plan.rank_cost, other.rank_cost) << "trial " << trial;
  }
}

TEST(HdpPlanTest, RejectsWhatCannotBePlaced) {
  // 6 ranks offer groups of at most 4: 4 * 4096 = 16384 tokens.
  EXPECT_NO_THROW(planHdp({16384}, options(6, 4096)));
  const std::string too_long = test::errorOf<InputError>([] { planHdp({100, 16385}, options(6, 4096)); });
  EXPECT_NE(too_long.find("sequence 1 of length 16385"), std::string::npos) << too_long;
  EXPECT_NE(too_long.find("capacity 4096"), std::string::npos) << too_long;
  EXPECT_NE(too_long.find("pool of 6"), std::string::npos) << too_long;
  EXPECT_THROW(planHdp({8193}, options(1, 8192)), InputError);  // longer than P * C

  const std::string capacity = test::errorOf<InputError>([] { planHdp({1}, options(4, 0)); });
  EXPECT_NE(capacity.find("capacity 0"), std::string::npos) << capacity;
  EXPECT_THROW(planHdp({1}, options(4, -5)), InputError);
  const std::string pool = test::errorOf<InputError>([] { planHdp({1}, options(0, 4096)); });
  EXPECT_NE(pool.find("pool 0"), std::string::npos) << pool;
  EXPECT_THROW(planHdp({1}, options(-1, 4096)), InputError);
  EXPECT_THROW(planHdp({0}, options(4, 4096)), InputError);
  EXPECT_THROW(planHdp({-3}, options(4, 4096)), InputError);

  HdpOptions opts = options(4, 4096);
  opts.quadratic_weight = -1;
  EXPECT_THROW(planHdp({1}, opts), InputError);
  opts.quadratic_weight = 0;
  opts.linear_weight = 0;
  EXPECT_THROW(planHdp({1}, opts), InputError);
  opts.linear_weight = INFINITY;
  EXPECT_THROW(planHdp({1}, opts), InputError);
}

}  // namespace
}  // namespace loom::parallel
