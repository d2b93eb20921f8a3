#include "parallel/tensor_parallel.h"

#include "kernels/torch/rms_norm_ops.h"
#include "parallel/fused_allreduce_norm.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <ATen/core/ivalue.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

namespace loom::parallel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

TensorParallel& tpAt(int64_t address) {
  return *reinterpret_cast<TensorParallel*>(address);
}
int64_t addressOf(TensorParallel& tp) {
  return reinterpret_cast<int64_t>(&tp);
}

// The collectives (gatherRows, reduceScatterRows) run on the group's stream:
// by a job, or through TensorParallel::run().

at::Tensor allGatherTokens(TensorParallel& tp, const at::Tensor& shard, int64_t tokens) {
  return tp.run([&] { return gatherRows(tp.group(), shard, tokens); }, {shard});
}

at::Tensor reduceScatterTokens(TensorParallel& tp, const at::Tensor& full) {
  return tp.run([&] { return reduceScatterRows(tp.group(), full); }, {full});
}

at::Tensor allReduceSum(TensorParallel& tp, const at::Tensor& t) {
  return tp.run(
      [&] {
        at::Tensor sum = t.clone(at::MemoryFormat::Contiguous);
        tp.group().allReduce(sum, dist::ReduceOp::kSum)->wait();
        return sum;
      },
      {t});
}

/// Identity forward; the gradient is summed over the group (a replicated
/// tensor feeding this rank's share of a computation).
class SumGradFunction : public torch::autograd::Function<SumGradFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t tp) {
    ctx->saved_data["tp"] = tp;
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {allReduceSum(tpAt(ctx->saved_data["tp"].toInt()), grads[0]), at::Tensor()};
  }
};

/// This rank's token shard of a replicated [tokens, hidden]; backward gathers.
class ScatterTokensFunction : public torch::autograd::Function<ScatterTokensFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t tp) {
    ctx->saved_data["tp"] = tp;
    ctx->saved_data["tokens"] = x.size(0);
    return tokenShard(x, tpAt(tp).size(), tpAt(tp).rank());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {allGatherTokens(tpAt(ctx->saved_data["tp"].toInt()), grads[0], ctx->saved_data["tokens"].toInt()),
            at::Tensor()};
  }
};

/// All tokens from the shards; the gradient (partial on every rank: it feeds
/// column-parallel linears) is reduce-scattered back to the shards.
class GatherTokensFunction : public torch::autograd::Function<GatherTokensFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& shard, int64_t tokens, int64_t tp) {
    ctx->saved_data["tp"] = tp;
    return allGatherTokens(tpAt(tp), shard, tokens);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {reduceScatterTokens(tpAt(ctx->saved_data["tp"].toInt()), grads[0]), at::Tensor(), at::Tensor()};
  }
};

/// One sublayer end shared by its start and finish nodes: the jobs queued on
/// the stream and what they produce.
struct SublayerEnd : torch::CustomClassHolder {
  TensorParallel* tp = nullptr;
  double eps = 0;
  bool replicated_consumer = false;
  int64_t tokens = 0;
  QueuedJob forward_done;
  at::Tensor residual_out;  ///< float32 or the model's dtype, saved for the norm's backward
  at::Tensor weight;
  QueuedJob backward_done;
  at::Tensor d_partial, d_residual, d_weight;
};

c10::intrusive_ptr<SublayerEnd> endOf(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<SublayerEnd>(ctx->saved_data["end"].toCapsule());
}

/// The backward of a sublayer end (on the stream): the gradient of `out`
/// brought to the norm's tokens, the norm's backward there, and the partial
/// input's gradient brought back to every token.
void backwardJob(SublayerEnd& end, const at::Tensor& d_out, const at::Tensor& d_residual_out) {
  c10::NoGradGuard no_grad;
  TensorParallel& tp = *end.tp;  // on its stream: collectives directly
  const bool sp = tp.options().sequence_parallel;
  const at::Tensor& r = end.residual_out;
  at::Tensor g;  // the gradient of out at the norm's tokens, summed over the group
  if (sp && end.replicated_consumer) {
    g = tokenShard(d_out, tp.size(), tp.rank());
  } else if (sp) {
    g = reduceScatterRows(tp.group(), d_out);
  } else {
    g = d_out.clone(at::MemoryFormat::Contiguous);
    if (!end.replicated_consumer) tp.group().allReduce(g, dist::ReduceOp::kSum)->wait();
  }
  // The norm's backward by the kernels, not autograd: autograd runs CUDA nodes
  // on its device thread, which may be the one waiting for this job.
  const at::ScalarType dtype = r.scalar_type();
  auto [dr, dw] = kernels::rmsNormBackward(g.to(dtype), d_residual_out.to(dtype), r, end.weight.to(dtype), end.eps);
  dw = dw.to(end.weight.scalar_type());
  end.d_residual = dr;
  if (sp) {
    tp.group().allReduce(dw, dist::ReduceOp::kSum)->wait();  // each rank normed its own tokens
    end.d_partial = gatherRows(tp.group(), dr, end.tokens);
  } else {
    end.d_partial = dr.clone();  // not dr itself: autograd may accumulate into either in place
  }
  end.d_weight = dw;
}

/// Queues the forward job; its outputs are buffers the job fills. Its
/// backward waits for the job that finish()'s backward queued.
class StartAddNormFunction : public torch::autograd::Function<StartAddNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& partial, const at::Tensor& residual,
                               const at::Tensor& weight, c10::IValue end_capsule) {
    const c10::intrusive_ptr<SublayerEnd> end =
        c10::static_intrusive_pointer_cast<SublayerEnd>(end_capsule.toCapsule());
    ctx->saved_data["end"] = end_capsule;
    TensorParallel& tp = *end->tp;
    at::Tensor out = at::empty(partial.sizes(), partial.options());
    at::Tensor residual_out = at::empty(residual.sizes(), residual.options());
    const at::Tensor x = partial.detach(), res = residual.detach(), w = weight.detach();
    end->weight = w;
    const FusedNormPath path =
        tp.options().sequence_parallel ? FusedNormPath::kReduceScatter : FusedNormPath::kAllReduce;
    // The job fills the outputs through aliases of its own: while it runs, apply()
    // attaches autograd history to `out` and `residual_out` on this thread.
    end->forward_done = tp.submit(
        [end, x, res, w, out_fill = out.detach(), residual_fill = residual_out.detach(), path]() mutable {
          c10::NoGradGuard no_grad;
          const FusedNormOutput o = fusedAllReduceAddRmsNorm(x, res, w, end->eps, end->tp->group(), path);
          out_fill.copy_(o.out);
          residual_fill.copy_(o.residual);
          end->residual_out = o.residual;
        },
        {x, res, w, out, residual_out});
    return {out, residual_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list /*grads*/) {
    const c10::intrusive_ptr<SublayerEnd> end = endOf(ctx);
    end->backward_done.wait({&end->d_partial, &end->d_residual, &end->d_weight});
    variable_list out{end->d_partial, end->d_residual, end->d_weight, at::Tensor()};
    end->d_partial = end->d_residual = end->d_weight = at::Tensor();
    return out;
  }
};

/// Waits for the forward job. Its backward queues the backward job; the start
/// node collects that job's gradients (autograd materialises unused outputs'
/// gradients as zeros, so both are defined).
class FinishAddNormFunction : public torch::autograd::Function<FinishAddNormFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& out, const at::Tensor& residual_out,
                               c10::IValue end_capsule) {
    const c10::intrusive_ptr<SublayerEnd> end =
        c10::static_intrusive_pointer_cast<SublayerEnd>(end_capsule.toCapsule());
    ctx->saved_data["end"] = end_capsule;
    end->forward_done.wait();  // `out` and `residual_out` are the caller's, only filled by the job
    return {out, residual_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const c10::intrusive_ptr<SublayerEnd> end = endOf(ctx);
    const at::Tensor d_out = grads[0].contiguous();
    const at::Tensor d_res = grads[1];
    end->backward_done =
        end->tp->submit([end, d_out, d_res] { backwardJob(*end, d_out, d_res); }, {d_out, d_res});
    // The start node ignores these and collects the job's gradients instead.
    return {grads[0], grads[1], at::Tensor()};
  }
};

}  // namespace

TensorParallel::TensorParallel(dist::Communicator& group, TensorParallelOptions opts) : group_(group), opts_(opts) {
  LOOM_CHECK_INPUT(opts.split_min_tokens >= 0, "tensor parallel: split_min_tokens (", opts.split_min_tokens,
                   ") must be >= 0");
}

void QueuedJob::wait(std::initializer_list<const at::Tensor*> results) {
  ticket.wait();
  if (!handoff) return;
  std::vector<at::Tensor> made;
  for (const at::Tensor* t : results) made.push_back(*t);
  handoff->join(made);
}

SideStream* TensorParallel::sideStreamFor(const c10::Device& device) {
  if (!device.is_cuda()) return nullptr;
  std::lock_guard<std::mutex> lock(side_mutex_);
  if (!side_) {
    side_ = makeSideStream(device, group_);
    side_device_ = device;
  }
  LOOM_CHECK_INPUT(device == side_device_, "tensor parallel: this group's jobs run on ", side_device_,
                   " but a job's tensors are on ", device, "; keep a group's model on one device");
  return side_.get();
}

QueuedJob TensorParallel::submit(std::function<void()> job, const std::vector<at::Tensor>& inputs) {
  c10::Device device = c10::kCPU;
  for (const at::Tensor& t : inputs) {
    if (t.defined()) {
      device = t.device();
      break;
    }
  }
  QueuedJob queued;
  if (SideStream* side = sideStreamFor(device)) {
    queued.handoff = side->handOff(inputs);
    queued.ticket = stream_.submit([handoff = queued.handoff, job = std::move(job)] { handoff->run(job); });
  } else {
    queued.ticket = stream_.submit(std::move(job));
  }
  return queued;
}

at::Tensor TensorParallel::run(const std::function<at::Tensor()>& job, const std::vector<at::Tensor>& inputs) {
  at::Tensor result;
  submit([&] { result = job(); }, inputs).wait({&result});
  return result;
}

TokenSplit TensorParallel::split(int64_t sequences, int64_t tokens_per_sequence) const {
  if (opts_.split_min_tokens == 0 || sequences * tokens_per_sequence < opts_.split_min_tokens) return {};
  if (sequences >= 2) return {2, false};
  return tokens_per_sequence >= 2 ? TokenSplit{2, true} : TokenSplit{};
}

AddNormOutput TensorParallel::enter(const at::Tensor& x, const at::Tensor& weight, double eps) {
  LOOM_CHECK_INPUT(x.dim() == 2, "tensor parallel: enter() takes [tokens, hidden], got ", x.sizes());
  const int64_t self = addressOf(*this);
  if (opts_.sequence_parallel) {
    // The gain's gradient is summed over the group: each rank norms its own tokens.
    const at::Tensor w = SumGradFunction::apply(weight, self);
    const at::Tensor residual = ScatterTokensFunction::apply(x, self);
    return {GatherTokensFunction::apply(kernels::rmsNorm(residual, w, eps), x.size(0), self), residual};
  }
  return {SumGradFunction::apply(kernels::rmsNorm(x, weight, eps), self), x};
}

PendingAddNorm TensorParallel::startAddNorm(const at::Tensor& partial, const at::Tensor& residual,
                                            const at::Tensor& weight, double eps, bool replicated_consumer) {
  auto end = c10::make_intrusive<SublayerEnd>();
  end->tp = this;
  end->eps = eps;
  end->replicated_consumer = replicated_consumer;
  end->tokens = partial.size(0);
  PendingAddNorm pending;
  pending.capsule_ = c10::IValue::make_capsule(end);
  pending.started_ = StartAddNormFunction::apply(partial, residual, weight, pending.capsule_);
  return pending;
}

AddNormOutput PendingAddNorm::finish() {
  const variable_list done = FinishAddNormFunction::apply(started_[0], started_[1], capsule_);
  return {done[0], done[1]};
}

}  // namespace loom::parallel
