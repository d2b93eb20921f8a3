#include "optim/outer/noloco.h"

#include "optim/outer/pairing.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace loom::optim::outer {
namespace {

constexpr int kExchangeTag = 2;

}  // namespace

NoLoCo::NoLoCo(NamedTensors params, const OuterComms& comms, const OuterOptions& opts, uint64_t seed)
    : flat_(std::move(params)),
      exchange_comm_(comms.exchange),
      opts_(opts),
      seed_(seed),
      phi_(at::zeros({flat_.numel()}, at::kFloat)),
      momentum_(at::zeros({flat_.numel()}, at::kFloat)),
      buffer_(at::zeros({2 * flat_.numel()}, at::kFloat)),
      exchange_(comms.exchange, comms.replica, opts.codec, stats_) {
  LOOM_CHECK_INPUT(opts.group_size >= 1, "outer.group_size (", opts.group_size, ") must be >= 1");
  flat_.gather(phi_, flat_.all());
}

void NoLoCo::afterInnerStep(int64_t step) {
  if (step % opts_.sync_every != 0) return;
  c10::NoGradGuard no_grad;
  const int64_t n = flat_.numel();
  at::Tensor phi_part = buffer_.narrow(0, 0, n);
  at::Tensor delta_part = buffer_.narrow(0, n, n);
  phi_part.copy_(phi_);
  flat_.gather(delta_part, flat_.all());  // flat_ ranges index the first n elements of the view
  delta_part.sub_(phi_);
  std::vector<int> group;  // only leaders exchange (exchange.h)
  if (exchange_comm_ != nullptr) {
    group = groupOf(seed_, step / opts_.sync_every, exchange_comm_->size(), static_cast<int>(opts_.group_size),
                    exchange_comm_->rank());
  }
  exchange_.start(buffer_, std::move(group), kExchangeTag);
  exchange_.wait();
  ++stats_.syncs;
  // m <- mu m + beta mean(d) + gamma (mean(phi) - phi);  phi <- phi + m
  momentum_.mul_(opts_.effectiveMomentum())
      .add_(delta_part, opts_.effectiveLr())
      .add_(phi_part.sub(phi_), opts_.effectiveConsensus());
  phi_.add_(momentum_);
  flat_.scatter(phi_, flat_.all());
}

NamedTensors NoLoCo::stateTensors() {
  return {{"outer.global", phi_}, {"outer.momentum", momentum_}};
}

void NoLoCo::loadState(const NamedTensors& state) {
  bool has_phi = false;
  bool has_momentum = false;
  for (const auto& [name, t] : state) {
    if (name != "outer.global" && name != "outer.momentum") continue;
    LOOM_CHECK_INPUT(t.numel() == flat_.numel() && t.scalar_type() == at::kFloat, "outer state ", name, " has ",
                     t.numel(), " x ", t.scalar_type(), " but this model needs ", flat_.numel(),
                     " x Float: the checkpoint belongs to another model");
    (name == "outer.global" ? phi_ : momentum_).copy_(t.reshape(-1));
    (name == "outer.global" ? has_phi : has_momentum) = true;
  }
  LOOM_CHECK_INPUT(has_phi && has_momentum, "outer state lacks outer.global or outer.momentum");
}

}  // namespace loom::optim::outer
