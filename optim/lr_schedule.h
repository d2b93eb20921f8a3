// Learning-rate schedule: linear warmup, then cosine decay to a floor.
//
//   step < W:   lr(step) = lr_max * (step + 1) / W
//   otherwise:  lr(step) = lr_min + (lr_max - lr_min) * (1 + cos(pi * p)) / 2,
//               p = (step - W) / max(1, S - W)   (clamped to [0, 1])
// with W = warmup_steps and S = total steps; `step` counts from 0.
#pragma once

#include "runtime/config/options.h"

#include <cstdint>

namespace loom::optim {

double learningRate(const OptimizerOptions& opts, int64_t step, int64_t total_steps);

}  // namespace loom::optim
