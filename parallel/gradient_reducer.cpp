#include "parallel/gradient_reducer.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <type_traits>

namespace loom::parallel {
namespace {

using Clock = std::chrono::steady_clock;

double msBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Rank r's chunk of a flat parameter-sized tensor, as a [W, chunk] view of the
// bucket's rank-major buffer (bucket_plan.h).
at::Tensor chunksView(const at::Tensor& buffer, const Bucket& bucket, const ParamSlot& slot) {
  return buffer.as_strided({bucket.shards, slot.chunk}, {bucket.segment, 1}, slot.offset);
}

// grad_accumulator() returns a std::shared_ptr<Node> up to some libtorch 2.x
// and a c10::intrusive_ptr<Node> after; either becomes a shared_ptr that keeps
// it alive (the tensor itself holds the accumulator only weakly).
template <class NodePtr>
std::shared_ptr<torch::autograd::Node> ownedNode(NodePtr node) {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    return node;
  } else {
    torch::autograd::Node* raw = node.get();
    return std::shared_ptr<torch::autograd::Node>(raw, [owner = std::move(node)](torch::autograd::Node*) {});
  }
}

}  // namespace

// Runs after AccumulateGrad has added this backward's gradient into .grad.
class GradientReducer::ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(GradientReducer* reducer, int param) : reducer_(reducer), param_(param) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer_->onGradReady(param_);
    return outputs;
  }

 private:
  GradientReducer* reducer_;
  int param_;
};

GradientReducer::GradientReducer(std::vector<at::Tensor> params, dist::Communicator& comm, const ReducerOptions& opts)
    : params_(std::move(params)), comm_(comm), opts_(opts) {
  std::vector<int64_t> numels;
  for (const at::Tensor& p : params_) {
    LOOM_CHECK(p.scalar_type() == at::kFloat && p.device().is_cpu() && p.requires_grad() && p.is_leaf(),
               "GradientReducer: parameters must be float32 CPU leaves that require grad");
    numels.push_back(p.numel());
  }
  plan_ = makeBucketPlan(numels, sizeof(float), opts_.bucket_bytes, opts_.shard ? comm_.size() : 1);
  c10::NoGradGuard no_grad;
  for (const Bucket& bucket : plan_.buckets) {
    buffers_.push_back(at::zeros({bucket.elements()}));
    if (opts_.shard) shard_grads_.push_back(at::zeros({bucket.segment}));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    if (opts_.shard) {
      p.mutable_grad() = at::zeros_like(p);
    } else {
      const auto [b, s] = plan_.where[i];
      const ParamSlot& slot = plan_.buckets[static_cast<size_t>(b)].slots[static_cast<size_t>(s)];
      p.mutable_grad() = buffers_[static_cast<size_t>(b)].narrow(0, slot.offset, slot.numel).view(p.sizes());
    }
    accumulators_.push_back(ownedNode(torch::autograd::impl::grad_accumulator(p)));
    hook_keys_.push_back(accumulators_.back()->add_post_hook(std::make_unique<ReadyHook>(this, static_cast<int>(i))));
  }
  pending_.resize(plan_.buckets.size());
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradientReducer::zeroGrad() {
  for (at::Tensor& buffer : buffers_) buffer.zero_();
  if (opts_.shard) {
    for (const at::Tensor& p : params_) p.grad().zero_();
  }
}

void GradientReducer::armForLastBackward() {
  LOOM_CHECK(!armed_, "GradientReducer: armForLastBackward() twice without finish()");
  armed_ = true;
  next_launch_ = 0;
  works_.clear();
  in_flight_.clear();
  completed_ = 0;
  for (size_t b = 0; b < plan_.buckets.size(); ++b) {
    pending_[b] = static_cast<int>(plan_.buckets[b].slots.size());
  }
}

// Completions are noticed in launch order, whenever a hook runs: cheap, and
// precise enough to tell communication that hid behind backward from the rest.
void GradientReducer::noteCompletions() {
  while (completed_ < works_.size() && works_[completed_]->isCompleted()) {
    in_flight_[completed_++].second = Clock::now();
  }
}

void GradientReducer::onGradReady(int param) {
  if (!armed_) return;
  noteCompletions();
  const size_t b = static_cast<size_t>(plan_.where[static_cast<size_t>(param)].first);
  if (--pending_[b] > 0) return;
  // Launch this bucket and every later one that is complete, in plan order.
  while (next_launch_ < plan_.buckets.size() && pending_[next_launch_] == 0) launch(next_launch_++);
}

void GradientReducer::launch(size_t b) {
  in_flight_.emplace_back(Clock::now(), Clock::time_point{});
  at::Tensor& buffer = buffers_[b];
  if (!opts_.shard) {
    works_.push_back(comm_.allReduce(buffer, dist::ReduceOp::kSum));
    noteCompletions();
    return;
  }
  c10::NoGradGuard no_grad;
  const Bucket& bucket = plan_.buckets[b];
  for (const ParamSlot& slot : bucket.slots) {
    const at::Tensor grad = params_[static_cast<size_t>(slot.param)].grad().reshape({-1});
    const int64_t padded = bucket.shards * slot.chunk;
    const at::Tensor source = padded == slot.numel ? grad : at::constant_pad_nd(grad, {0, padded - slot.numel});
    chunksView(buffer, bucket, slot).copy_(source.view({bucket.shards, slot.chunk}));
  }
  works_.push_back(comm_.reduceScatter(buffer, shard_grads_[b], dist::ReduceOp::kSum));
  noteCompletions();
}

ReduceStats GradientReducer::finish() {
  LOOM_CHECK(armed_, "GradientReducer: finish() without armForLastBackward()");
  const auto backward_end = Clock::now();
  // Buckets whose parameters got no gradient in this backward reduce their zeros.
  for (size_t b = next_launch_; b < plan_.buckets.size(); ++b) pending_[b] = 0;
  while (next_launch_ < plan_.buckets.size()) launch(next_launch_++);
  noteCompletions();
  for (auto& work : works_) work->wait();
  const auto done = Clock::now();
  for (size_t i = completed_; i < in_flight_.size(); ++i) in_flight_[i].second = done;
  armed_ = false;
  ReduceStats stats;
  stats.buckets = static_cast<int>(works_.size());
  // The union of the in-flight intervals (launched in order, so one sweep merges them).
  Clock::time_point covered_until{};
  for (const auto& [launched, completed] : in_flight_) {
    const Clock::time_point from = std::max(launched, covered_until);
    if (completed > from) stats.comm_ms += msBetween(from, completed);
    covered_until = std::max(covered_until, completed);
  }
  stats.exposed_ms = msBetween(backward_end, done);
  works_.clear();
  return stats;
}

}  // namespace loom::parallel
