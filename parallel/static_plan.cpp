#include "parallel/static_plan.h"

#include "parallel/hdp_plan.h"
#include "runtime/core/error.h"

#include <algorithm>
#include <numeric>

namespace loom::parallel {

double StaticPlan::imbalance() const {
  if (rank_cost.empty()) return 1;
  const double total = std::accumulate(rank_cost.begin(), rank_cost.end(), 0.0);
  if (total <= 0) return 1;
  return *std::max_element(rank_cost.begin(), rank_cost.end()) / (total / static_cast<double>(rank_cost.size()));
}

int staticCp(int64_t longest, int64_t capacity) { return static_cast<int>(hdpGroupSize(longest, capacity)); }

StaticPlan planStatic(const std::vector<int64_t>& lengths, int pool, int cp, int64_t capacity) {
  LOOM_CHECK_INPUT(pool >= 1 && cp >= 1 && (cp & (cp - 1)) == 0 && pool % cp == 0, "static mesh: cp ", cp,
                   " must be a power of two dividing the pool of ", pool, " ranks");
  LOOM_CHECK_INPUT(capacity > 0, "static mesh: capacity ", capacity, " must be > 0");
  const int64_t row_capacity = cp * capacity;
  std::vector<int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return lengths[static_cast<size_t>(a)] > lengths[static_cast<size_t>(b)];
  });
  StaticPlan plan;
  plan.pool = pool;
  plan.cp = cp;
  std::vector<double> row_cost;
  for (int64_t i : order) {
    const int64_t length = lengths[static_cast<size_t>(i)];
    LOOM_CHECK_INPUT(length >= 1 && length <= row_capacity, "static mesh: sequence ", i, " of ", length,
                     " tokens does not fit cp ", cp, " x capacity ", capacity);
    plan.global_tokens += length;
    size_t r = 0;
    while (r < plan.rows.size() && plan.rows[r].tokens + length > row_capacity) ++r;
    if (r == plan.rows.size()) {
      plan.rows.emplace_back();
      row_cost.push_back(0);
    }
    plan.rows[r].sequences.push_back(i);
    plan.rows[r].tokens += length;
    row_cost[r] += static_cast<double>(length) * static_cast<double>(length) / cp;
  }
  // Rows to groups, costliest first, each to the least-loaded group (ties: lowest).
  std::vector<size_t> by_cost(plan.rows.size());
  std::iota(by_cost.begin(), by_cost.end(), size_t{0});
  std::stable_sort(by_cost.begin(), by_cost.end(), [&](size_t a, size_t b) { return row_cost[a] > row_cost[b]; });
  std::vector<double> group_cost(static_cast<size_t>(pool / cp), 0);
  for (size_t r : by_cost) {
    const auto g = static_cast<size_t>(std::min_element(group_cost.begin(), group_cost.end()) - group_cost.begin());
    plan.rows[r].first_rank = static_cast<int>(g) * cp;
    group_cost[g] += row_cost[r];
  }
  plan.rank_cost.assign(static_cast<size_t>(pool), 0);
  for (int rank = 0; rank < pool; ++rank) plan.rank_cost[static_cast<size_t>(rank)] = group_cost[static_cast<size_t>(rank / cp)];
  return plan;
}

}  // namespace loom::parallel
