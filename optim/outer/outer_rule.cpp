#include "optim/outer/outer_rule.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace loom::optim::outer {

OuterRule OuterRule::from(const OuterOptions& opts) {
  OuterRule rule;
  rule.lr = opts.effectiveLr();
  rule.momentum = opts.effectiveMomentum();
  if (opts.algorithm == OuterAlgorithm::kCo2) {
    rule.kind = Kind::kCo2;
    rule.staleness_penalty = opts.staleness_penalty;
    rule.clip = opts.clip;
  } else {
    rule.kind = opts.nesterov ? Kind::kNesterov : Kind::kHeavyBall;
  }
  return rule;
}

void OuterRule::apply(at::Tensor& x, at::Tensor& m, const at::Tensor& g) const {
  c10::NoGradGuard no_grad;
  switch (kind) {
    case Kind::kNesterov:
      m.mul_(momentum).add_(g);
      x.add_(g.add(m, momentum), -lr);
      return;
    case Kind::kHeavyBall:
      m.mul_(momentum).add_(g);
      x.add_(m, -lr);
      return;
    case Kind::kCo2:
      m.mul_(momentum).add_(g.div(staleness_penalty));
      if (clip > 0) m.clamp_(-clip, clip);  // in place: the public CO2 code's out-of-place clamp is a no-op
      x.add_(m, -lr);
      return;
  }
}

}  // namespace loom::optim::outer
