#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace loom::optim {

double learningRate(const OptimizerOptions& opts, int64_t step, int64_t total_steps) {
  const int64_t warmup = opts.warmup_steps;
  if (step < warmup) {
    return opts.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  }
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  return opts.min_lr + (opts.lr - opts.min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace loom::optim
