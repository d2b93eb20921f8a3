// The update an outer optimizer applies to its global weights x, given the
// averaged pseudo-gradient g (g points uphill: x - g is the replicas' mean).
//   kNesterov   PyTorch SGD(nesterov=True, dampening=0):  m <- mu m + g;  x <- x - lr (g + mu m)
//   kHeavyBall  PyTorch SGD(momentum=mu):                 m <- mu m + g;  x <- x - lr m
//   kCo2        m <- mu m + g / lambda;  m <- clamp(m, -phi, phi) when phi > 0;  x <- x - lr m
// The same at:: operations as torch.optim.SGD, in the same order, so results
// match it bit for bit (momentum starts at zero; SGD's first-step clone equals
// 0 * mu + g except that a -0.0 gradient becomes +0.0).
#pragma once

#include "runtime/config/options.h"

#include <ATen/core/Tensor.h>

namespace loom::optim::outer {

struct OuterRule {
  enum class Kind { kNesterov, kHeavyBall, kCo2 };
  Kind kind = Kind::kNesterov;
  double lr = 0.7;
  double momentum = 0.9;
  double staleness_penalty = 1;  ///< kCo2 only
  double clip = 0;               ///< kCo2 only; 0 = no clip

  /// The rule `opts` asks for (DiLoCo: Nesterov or heavy-ball; CO2; NoLoCo has its own update).
  static OuterRule from(const OuterOptions& opts);

  /// Updates x and m in place from g (all fp32, same shape).
  void apply(at::Tensor& x, at::Tensor& m, const at::Tensor& g) const;
};

}  // namespace loom::optim::outer
