#include "optim/outer/diloco.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <numeric>

namespace loom::optim::outer {
namespace {

constexpr int kExchangeTag = 1;  // one exchange in flight at a time on this communicator

at::Tensor zerosLike(int64_t n) {
  return at::zeros({n}, at::kFloat);
}

// The {begin, end} tensor saved under `name` (outer.pending_range, outer.sent_range), checked against numel.
FlatRange rangeOf(const at::Tensor& t, const char* name, int64_t numel) {
  LOOM_CHECK_INPUT(t.defined() && t.numel() == 2 && t.scalar_type() == at::kLong, "outer state has ", name,
                   " without a valid ", name, "_range (two int64 values)");
  const FlatRange range{t[0].item<int64_t>(), t[1].item<int64_t>()};
  LOOM_CHECK_INPUT(0 <= range.begin && range.begin <= range.end && range.end <= numel, name, "_range [", range.begin,
                   ", ", range.end, ") lies outside the model's ", numel, " elements");
  return range;
}

at::Tensor rangeTensor(FlatRange range) {
  return at::tensor({range.begin, range.end}, at::kLong);
}

}  // namespace

DiLoCo::DiLoCo(NamedTensors params, const OuterComms& comms, const OuterOptions& opts,
               const std::vector<int64_t>& fragment_sizes)
    : flat_(std::move(params)),
      opts_(opts),
      rule_(OuterRule::from(opts)),
      fragments_(flat_.fragments(opts.fragments, fragment_sizes)),
      group_(comms.exchange == nullptr ? 0 : comms.exchange->size()),
      global_(zerosLike(flat_.numel())),
      momentum_(zerosLike(flat_.numel())),
      outgoing_{zerosLike(flat_.numel()), zerosLike(flat_.numel())},
      exchange_(comms.exchange, comms.replica, opts.codec, stats_) {
  LOOM_CHECK_INPUT(opts.sync_every >= 1 && opts.sync_every % opts.fragments == 0 && opts.fragment_delay >= 0 &&
                       opts.fragment_delay < opts.sync_every / opts.fragments,
                   "outer: sync_every (", opts.sync_every, ") must be a positive multiple of fragments (",
                   opts.fragments, ") and fragment_delay (", opts.fragment_delay, ") below sync_every / fragments");
  LOOM_CHECK_INPUT(!opts.delayed || opts.fragments == 1, "outer.delayed runs without streaming fragments (got ",
                   opts.fragments, ")");
  std::iota(group_.begin(), group_.end(), 0);
  flat_.gather(global_, flat_.all());
  if (opts_.fragment_alpha > 0) local_ = zerosLike(flat_.numel());
}

int64_t DiLoCo::stateBytes() const {
  const int64_t buffers = 4 + (local_.defined() ? 1 : 0);  // global, momentum, outgoing_[2], local_
  return buffers * flat_.numel() * static_cast<int64_t>(sizeof(float));
}

void DiLoCo::fill(FlatRange range) {
  c10::NoGradGuard no_grad;
  at::Tensor out = outgoing_[next_].narrow(0, range.begin, range.numel());
  flat_.gather(outgoing_[next_], range);
  at::sub_out(out, global_.narrow(0, range.begin, range.numel()), out);
}

void DiLoCo::start(FlatRange range) {
  c10::NoGradGuard no_grad;
  // The exchange overwrites its buffer with the average on another thread: snapshotState() reads this copy.
  at::Tensor kept = outgoing_[1 - next_];
  kept.narrow(0, 0, range.begin).zero_();
  kept.narrow(0, range.end, flat_.numel() - range.end).zero_();
  at::Tensor out = outgoing_[next_].narrow(0, range.begin, range.numel());
  kept.narrow(0, range.begin, range.numel()).copy_(out);
  exchange_.start(out, group_, kExchangeTag);
  awaited_ = next_;
  awaited_range_ = range;
  sent_kept_ = true;
  next_ = 1 - next_;
}

void DiLoCo::awaitArrival() {
  if (exchange_.pending()) {
    exchange_.wait();
    ++stats_.syncs;
  }
}

at::Tensor DiLoCo::receive() {
  LOOM_CHECK(awaited_ >= 0, "outer: no average to receive");
  awaitArrival();
  const int index = awaited_;
  awaited_ = -1;
  return outgoing_[index];
}

void DiLoCo::apply(FlatRange range, const at::Tensor& average, double alpha) {
  c10::NoGradGuard no_grad;
  at::Tensor global = global_.narrow(0, range.begin, range.numel());
  at::Tensor momentum = momentum_.narrow(0, range.begin, range.numel());
  rule_.apply(global, momentum, average.narrow(0, range.begin, range.numel()));
  if (alpha > 0) {
    // local <- global + alpha (local - global): keep part of the progress made while the fragment was in flight.
    flat_.gather(local_, range);
    at::Tensor local = local_.narrow(0, range.begin, range.numel());
    local.sub_(global).mul_(alpha).add_(global);
    flat_.scatter(local_, range);
  } else {
    flat_.scatter(global_, range);
  }
}

void DiLoCo::afterInnerStep(int64_t step) {
  if (opts_.delayed) {
    if (step % opts_.sync_every == 0) endDelayedRound();
    return;
  }
  const int64_t period = opts_.sync_every / opts_.fragments;  // s
  const auto fragment_of = [&](int64_t end_step) { return (end_step / period - 1) % opts_.fragments; };
  if ((step + opts_.fragment_delay) % period == 0) {
    const FlatRange range = fragments_[fragment_of(step + opts_.fragment_delay)];
    fill(range);
    start(range);
  }
  if (step % period == 0) {
    const FlatRange range = fragments_[fragment_of(step)];
    LOOM_CHECK(awaited_ >= 0 && awaited_range_.begin == range.begin, "outer: fragment ", fragment_of(step),
               " reaches its sync at step ", step, " without having been sent");
    apply(range, receive(), opts_.fragment_alpha);
  }
}

void DiLoCo::endDelayedRound() {
  c10::NoGradGuard no_grad;
  at::Tensor previous;
  if (awaited_ >= 0) previous = receive();
  fill(flat_.all());  // D_r = global - local, against the global the round started from
  if (previous.defined()) rule_.apply(global_, momentum_, previous);
  start(flat_.all());  // after the apply: it keeps its copy of D_r in the buffer `previous` was
  flat_.scatter(global_, flat_.all());
}

void DiLoCo::finish() {
  if (awaited_ < 0) return;
  const FlatRange range = awaited_range_;
  const at::Tensor average = receive();
  if (opts_.delayed) {
    rule_.apply(global_, momentum_, average);
    flat_.scatter(global_, flat_.all());
  } else {
    apply(range, average, opts_.fragment_alpha);
  }
}

NamedTensors DiLoCo::stateTensors() {
  NamedTensors state{{"outer.global", global_}, {"outer.momentum", momentum_}};
  if (awaited_ >= 0) {
    awaitArrival();
    // Outside the awaited range the buffer holds stale data; zero it so the file is a function of the state.
    at::Tensor pending = at::zeros_like(global_);
    pending.narrow(0, awaited_range_.begin, awaited_range_.numel())
        .copy_(outgoing_[awaited_].narrow(0, awaited_range_.begin, awaited_range_.numel()));
    state.emplace_back("outer.pending", pending);
    state.emplace_back("outer.pending_range", rangeTensor(awaited_range_));
  }
  return state;
}

NamedTensors DiLoCo::snapshotState() {
  NamedTensors state{{"outer.global", global_}, {"outer.momentum", momentum_}};
  if (awaited_ < 0) return state;
  if (sent_kept_) {
    state.emplace_back("outer.sent", outgoing_[1 - awaited_]);
    state.emplace_back("outer.sent_range", rangeTensor(awaited_range_));
  } else {  // loaded from a disk checkpoint: the average itself is here, no exchange is in flight
    state.emplace_back("outer.pending", outgoing_[awaited_]);
    state.emplace_back("outer.pending_range", rangeTensor(awaited_range_));
  }
  return state;
}

void DiLoCo::loadState(const NamedTensors& state) {
  LOOM_CHECK(!exchange_.pending(), "outer: loadState while an exchange is in flight");
  awaited_ = -1;
  sent_kept_ = false;
  bool has_global = false;
  bool has_momentum = false;
  at::Tensor pending;
  at::Tensor pending_range;
  at::Tensor sent;
  at::Tensor sent_range;
  for (const auto& [name, t] : state) {
    const bool flat_buffer =
        name == "outer.global" || name == "outer.momentum" || name == "outer.pending" || name == "outer.sent";
    LOOM_CHECK_INPUT(!flat_buffer || (t.numel() == flat_.numel() && t.scalar_type() == at::kFloat), "outer state ",
                     name, " has ", t.numel(), " x ", t.scalar_type(), " but this model needs ", flat_.numel(),
                     " x Float: the checkpoint belongs to another model");
    if (name == "outer.global") {
      global_.copy_(t.reshape(-1));
      has_global = true;
    } else if (name == "outer.momentum") {
      momentum_.copy_(t.reshape(-1));
      has_momentum = true;
    } else if (name == "outer.pending") {
      pending = t;
    } else if (name == "outer.pending_range") {
      pending_range = t;
    } else if (name == "outer.sent") {
      sent = t;
    } else if (name == "outer.sent_range") {
      sent_range = t;
    }
  }
  LOOM_CHECK_INPUT(has_global && has_momentum, "outer state lacks outer.global or outer.momentum");
  LOOM_CHECK_INPUT(!pending.defined() || !sent.defined(), "outer state holds both outer.pending and outer.sent: ",
                   "an average is either applied next or still travelling, not both");
  if (pending.defined()) {
    awaited_range_ = rangeOf(pending_range, "outer.pending", flat_.numel());
    outgoing_[0].copy_(pending.reshape(-1));
    awaited_ = 0;
    next_ = 1;
  } else if (sent.defined()) {
    // The exchange was in flight when the snapshot was taken: every replica restarts it from its contribution.
    const FlatRange range = rangeOf(sent_range, "outer.sent", flat_.numel());
    next_ = 0;
    outgoing_[0].copy_(sent.reshape(-1));
    start(range);
  }
}

}  // namespace loom::optim::outer
