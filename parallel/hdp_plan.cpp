#include "parallel/hdp_plan.h"

#include "runtime/core/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace loom::parallel {
namespace {

int largestPowerOfTwoAtMost(int n) {
  int p = 1;
  while (p <= n / 2) p *= 2;
  return p;
}

/// Per-rank cost of a sequence of `length` tokens on `ranks` ranks. The explicit
/// fma (correctly rounded everywhere) keeps a compiler's contraction choices out
/// of the result; dividing by a power of two is exact.
double sequenceCost(int64_t length, int64_t ranks, const HdpOptions& opts) {
  const double l = static_cast<double>(length);
  return std::fma(l * l, opts.quadratic_weight, l * opts.linear_weight) / static_cast<double>(ranks);
}

void validate(const std::vector<int64_t>& lengths, const HdpOptions& opts) {
  LOOM_CHECK_INPUT(opts.pool >= 1, "HDP planner: pool ", opts.pool, " must be at least 1 rank");
  LOOM_CHECK_INPUT(opts.capacity > 0, "HDP planner: capacity ", opts.capacity, " tokens per rank must be positive");
  LOOM_CHECK_INPUT(std::isfinite(opts.quadratic_weight) && opts.quadratic_weight >= 0 &&
                       std::isfinite(opts.linear_weight) && opts.linear_weight >= 0 &&
                       opts.quadratic_weight + opts.linear_weight > 0,
                   "HDP planner: cost weights quadratic ", opts.quadratic_weight, ", linear ", opts.linear_weight,
                   " must be finite, non-negative and not both 0");
  const int64_t largest_group = largestPowerOfTwoAtMost(opts.pool);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const int64_t length = lengths[i];
    LOOM_CHECK_INPUT(length >= 1, "HDP planner: sequence ", i, " has length ", length, "; lengths must be >= 1");
    const int64_t needed = (length - 1) / opts.capacity + 1;  // ceil(L / C) without overflow
    LOOM_CHECK_INPUT(needed <= largest_group, "HDP planner: sequence ", i, " of length ", length, " needs ", needed,
                     " ranks of capacity ", opts.capacity, " but a pool of ", opts.pool,
                     " ranks offers aligned groups of at most ", largest_group,
                     "; raise the capacity, grow the pool or cut the sequence");
  }
}

struct Item {
  int64_t sequence = 0;
  int64_t length = 0;
  int ranks = 1;
  int first_rank = 0;
  int64_t tokens = 0;  ///< per member rank: ceil(L / ranks)
  double cost = 0;     ///< per member rank
};

/// Pass 1: step-level LPT on aligned blocks. `items` is in planning order.
void assign(std::vector<Item>& items, std::vector<double>& load) {
  const int pool = static_cast<int>(load.size());
  for (Item& item : items) {
    int best = -1;
    double best_max = 0;
    for (int first = 0; first + item.ranks <= pool; first += item.ranks) {
      const double block_max = *std::max_element(load.begin() + first, load.begin() + first + item.ranks);
      if (best < 0 || block_max < best_max) {
        best = first;
        best_max = block_max;
      }
    }
    item.first_rank = best;
    for (int r = best; r < best + item.ranks; ++r) load[static_cast<size_t>(r)] += item.cost;
  }
}

/// Occupancy of one wave while pass 2 fills it.
struct WaveState {
  std::vector<int64_t> tokens;   ///< per rank
  std::vector<uint8_t> grouped;  ///< per rank: in a CP group this wave
};

bool fits(const WaveState& wave, const Item& item, int64_t capacity) {
  if (item.ranks == 1) {
    const size_t r = static_cast<size_t>(item.first_rank);
    return !wave.grouped[r] && wave.tokens[r] + item.tokens <= capacity;
  }
  for (int r = item.first_rank; r < item.first_rank + item.ranks; ++r) {
    if (wave.tokens[static_cast<size_t>(r)] != 0) return false;  // grouped ranks hold tokens too
  }
  return true;
}

/// Pass 2: first fit into waves, in planning order.
std::vector<Wave> packWaves(const std::vector<Item>& items, int pool, int64_t capacity) {
  std::vector<Wave> waves;
  std::vector<WaveState> states;
  for (const Item& item : items) {
    size_t w = 0;
    while (w < states.size() && !fits(states[w], item, capacity)) ++w;
    if (w == states.size()) {
      states.push_back(
          {std::vector<int64_t>(static_cast<size_t>(pool), 0), std::vector<uint8_t>(static_cast<size_t>(pool), 0)});
      waves.emplace_back();
    }
    for (int r = item.first_rank; r < item.first_rank + item.ranks; ++r) {
      states[w].tokens[static_cast<size_t>(r)] += item.tokens;
      states[w].grouped[static_cast<size_t>(r)] = item.ranks > 1;
    }
    waves[w].placements.push_back({item.sequence, item.first_rank, item.ranks});
  }
  return waves;
}

void mix(uint64_t& hash, int64_t value) {
  const uint64_t bits = static_cast<uint64_t>(value);
  for (int byte = 0; byte < 8; ++byte) {  // little-endian whatever the host
    hash ^= (bits >> (8 * byte)) & 0xffu;
    hash *= 0x100000001b3ull;
  }
}

}  // namespace

int64_t hdpGroupSize(int64_t length, int64_t capacity) {
  LOOM_CHECK(length >= 1 && capacity >= 1, "hdpGroupSize: length ", length, ", capacity ", capacity);
  const int64_t needed = (length - 1) / capacity + 1;
  int64_t size = 1;
  while (size < needed) size *= 2;
  return size;
}

HdpPlan planHdp(const std::vector<int64_t>& lengths, const HdpOptions& opts) {
  validate(lengths, opts);
  std::vector<Item> items(lengths.size());
  HdpPlan plan;
  plan.pool = opts.pool;
  plan.capacity = opts.capacity;
  for (size_t i = 0; i < lengths.size(); ++i) {
    Item& item = items[i];
    item.sequence = static_cast<int64_t>(i);
    item.length = lengths[i];
    item.ranks = static_cast<int>(hdpGroupSize(item.length, opts.capacity));
    item.tokens = (item.length - 1) / item.ranks + 1;
    item.cost = sequenceCost(item.length, item.ranks, opts);
    plan.global_tokens += item.length;
  }
  // Longest first (so largest groups first); equal lengths by index. A total order:
  // the plan never depends on the sort algorithm.
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.length != b.length ? a.length > b.length : a.sequence < b.sequence;
  });
  plan.rank_cost.assign(static_cast<size_t>(opts.pool), 0.0);
  assign(items, plan.rank_cost);
  plan.waves = packWaves(items, opts.pool, opts.capacity);
  return plan;
}

double HdpPlan::imbalance() const {
  if (rank_cost.empty()) return 1.0;
  const double total = std::accumulate(rank_cost.begin(), rank_cost.end(), 0.0);
  if (total <= 0) return 1.0;
  const double mean = total / static_cast<double>(rank_cost.size());
  return *std::max_element(rank_cost.begin(), rank_cost.end()) / mean;
}

uint64_t HdpPlan::hash() const {
  uint64_t hash = 0xcbf29ce484222325ull;
  mix(hash, pool);
  mix(hash, global_tokens);
  mix(hash, static_cast<int64_t>(waves.size()));
  for (const Wave& wave : waves) {
    mix(hash, static_cast<int64_t>(wave.placements.size()));
    for (const Placement& p : wave.placements) {
      mix(hash, p.sequence);
      mix(hash, p.first_rank);
      mix(hash, p.ranks);
    }
  }
  return hash;
}

}  // namespace loom::parallel
