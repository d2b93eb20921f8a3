#include "runtime/dist/gloo_group.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

#include <chrono>
#include <type_traits>
#include <utility>
#include <vector>

namespace loom::dist {
namespace {

// Slots of loom's own collectives; Gloo uses prefixes 0x01..0x08 and c10d's
// send/recv use the user's tag (< 2^31) as the slot.
constexpr uint8_t kReduceScatterSlotPrefix = 0x4c;

void reduceInto(at::Tensor& acc, const at::Tensor& chunk, ReduceOp op) {
  // 16-bit floats are combined in float32 (CPU kernels for them are partial in
  // libtorch 1.13) and rounded once per step.
  if (acc.scalar_type() == at::kHalf || acc.scalar_type() == at::kBFloat16) {
    at::Tensor wide = acc.to(at::kFloat);
    reduceInto(wide, chunk.to(at::kFloat), op);
    acc.copy_(wide);
    return;
  }
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      acc.add_(chunk);
      return;
    case ReduceOp::kMax:
      at::maximum_out(acc, acc, chunk);
      return;
    case ReduceOp::kMin:
      at::minimum_out(acc, acc, chunk);
      return;
  }
}

// The result list of c10d's future: one list holding `output`.
std::vector<std::vector<at::Tensor>> outputsOf(const at::Tensor& output) {
  std::vector<std::vector<at::Tensor>> outputs(1);
  outputs[0].push_back(output);
  return outputs;
}

// What the ring needs besides AsyncWork's own constructor arguments.
struct RingArgs {
  std::shared_ptr<gloo::Context> context;
  at::Tensor input;
  at::Tensor output;
  ReduceOp op;
  uint32_t tag;
};

// `Base` is c10d::ProcessGroupGloo::AsyncWork, a template parameter only so that
// makeRingWork's branches for other libtorch releases are never instantiated.
template <class Base>
class RingReduceScatterWork final : public Base {
 public:
  template <class... BaseArgs>
  explicit RingReduceScatterWork(RingArgs args, BaseArgs&&... base)
      : Base(std::forward<BaseArgs>(base)...),
        gloo_context_(std::move(args.context)),
        input_(std::move(args.input)),
        output_(std::move(args.output)),
        op_(args.op),
        slot_(gloo::Slot::build(kReduceScatterSlotPrefix, args.tag)) {}

  // Pure virtual in recent AsyncWork (Gloo's flight recorder, about 2.8), absent
  // before: no `override`, so that both compile.
  const std::vector<at::Tensor> getInputTensors() { return {input_}; }
  const std::vector<at::Tensor> getOutputTensors() { return {output_}; }

  void run() override {
    const int n = gloo_context_->size;
    const int rank = gloo_context_->rank;
    const int64_t m = output_.numel();
    const at::Tensor flat = input_.view({-1});
    auto chunk = [&](int index) { return flat.narrow(0, ((index % n) + n) % n * m, m); };
    const size_t bytes = static_cast<size_t>(m) * input_.element_size();
    const int right = (rank + 1) % n;
    const int left = (rank - 1 + n) % n;
    // Step s sends the partial result for chunk (rank - s - 1) to the right and
    // receives the left neighbour's partial for chunk (rank - s - 2), adding
    // this rank's own part; after size-1 steps that chunk is chunk `rank`.
    at::Tensor buffers[2] = {at::empty({m}, input_.options()), at::empty({m}, input_.options())};
    at::Tensor sending = chunk(rank - 1);
    at::Tensor result = flat.narrow(0, rank * m, m);
    for (int s = 0; s + 1 < n; ++s) {
      at::Tensor& receiving = buffers[s % 2];
      auto tx = gloo_context_->createUnboundBuffer(sending.data_ptr(), bytes);
      auto rx = gloo_context_->createUnboundBuffer(receiving.data_ptr(), bytes);
      rx->recv(left, slot_);
      tx->send(right, slot_);
      rx->waitRecv();
      tx->waitSend();
      reduceInto(receiving, chunk(rank - s - 2), op_);
      sending = receiving;
      result = receiving;
    }
    if (op_ == ReduceOp::kAvg) {
      result = at::isFloatingType(result.scalar_type()) ? result / n : at::div(result, n, "trunc");
    }
    output_.copy_(result.view(output_.sizes()));
  }

 private:
  std::shared_ptr<gloo::Context> gloo_context_;
  at::Tensor input_;
  at::Tensor output_;
  ReduceOp op_;
  uint64_t slot_;
};

// AsyncWork made concrete with AsyncWork's own constructors, so that
// std::is_constructible tells which constructor this libtorch has.
template <class Base>
struct ConstructorProbe final : Base {
  using Base::Base;
  void run() override {}
  const std::vector<at::Tensor> getInputTensors() { return {}; }
  const std::vector<at::Tensor> getOutputTensors() { return {}; }
};

// AsyncWork's constructor changed three times; the arguments are picked at
// compile time instead of by version numbers (those below come from the
// changes' dates; 1.13, 2.6 and 2.14 headers were compiled against):
//   1.13:        (outputs, ...)
//   2.x .. 2.7:  (outputs, op type, seq, ...)
//   2.8:         (context, outputs, op type, seq, ...)
//   2.9 ..:      (context, outputs, op type, seq, timeout, ...)
template <class Base>
c10::intrusive_ptr<Base> makeRingWork(RingArgs args) {
  using Probe = ConstructorProbe<Base>;
  using Context = std::shared_ptr<gloo::Context>;
  using Outputs = std::vector<std::vector<at::Tensor>>;
  using Work = RingReduceScatterWork<Base>;
  constexpr auto kType = c10d::OpType::REDUCE_SCATTER;
  constexpr uint64_t kSeq = 0;
  Context context = args.context;
  Outputs outputs = outputsOf(args.output);
  if constexpr (std::is_constructible_v<Probe, Context, Outputs, c10d::OpType, uint64_t, std::chrono::milliseconds>) {
    const std::chrono::milliseconds timeout = context->getTimeout();
    return c10::make_intrusive<Work>(std::move(args), context, std::move(outputs), kType, kSeq, timeout);
  } else if constexpr (std::is_constructible_v<Probe, Context, Outputs, c10d::OpType, uint64_t>) {
    return c10::make_intrusive<Work>(std::move(args), context, std::move(outputs), kType, kSeq);
  } else if constexpr (std::is_constructible_v<Probe, Outputs, c10d::OpType, uint64_t>) {
    return c10::make_intrusive<Work>(std::move(args), std::move(outputs), kType, kSeq);
  } else {
    return c10::make_intrusive<Work>(std::move(args), std::move(outputs));
  }
}

}  // namespace

c10::intrusive_ptr<c10d::Work> GlooGroup::reduceScatterRing(const at::Tensor& input, const at::Tensor& output,
                                                            ReduceOp op) {
  LOOM_CHECK(input.is_contiguous() && input.numel() == output.numel() * getSize(), "reduceScatterRing: input of ",
             input.numel(), " elements for ", getSize(), " x ", output.numel());
  const uint32_t tag = nextTag();
  auto work = makeRingWork<AsyncWork>({getContext(tag), input, output, op, tag});
  enqueue(work);
  return work;
}

}  // namespace loom::dist
