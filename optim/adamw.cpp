#include "optim/adamw.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <map>

namespace loom::optim {
namespace {

// Elements per parallel task: large enough that the task overhead is noise.
constexpr int64_t kGrain = 1 << 15;

struct StepScalars {
  float lr;
  float beta1;
  float beta2;
  float eps;
  float decay_factor;  // 1 - lr * wd
  float step_size;     // lr / (1 - beta1^t)
  float bias2_sqrt;    // sqrt(1 - beta2^t)
};

void updateRange(float* p, const float* g, float* m, float* v, int64_t begin, int64_t end, const StepScalars& s) {
  const float one_minus_b1 = 1.0f - s.beta1;
  const float one_minus_b2 = 1.0f - s.beta2;
  for (int64_t i = begin; i < end; ++i) {
    const float grad = g[i];
    const float mi = s.beta1 * m[i] + one_minus_b1 * grad;
    const float vi = s.beta2 * v[i] + one_minus_b2 * grad * grad;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / s.bias2_sqrt + s.eps;
    p[i] = p[i] * s.decay_factor - s.step_size * mi / denom;
  }
}

}  // namespace

AdamW::AdamW(NamedTensors parameters, const OptimizerOptions& opts) : opts_(opts) {
  slots_.reserve(parameters.size());
  for (auto& [name, param] : parameters) {
    LOOM_CHECK(param.is_contiguous() && param.scalar_type() == at::kFloat && param.device().is_cpu(),
               "AdamW: parameter ", name, " must be a contiguous float32 CPU tensor");
    slots_.push_back(Slot{name, param, at::zeros_like(param), at::zeros_like(param), param.dim() >= 2});
  }
}

void AdamW::step(double lr) {
  ++step_;
  const double bias1 = 1.0 - std::pow(opts_.beta1, static_cast<double>(step_));
  const double bias2 = 1.0 - std::pow(opts_.beta2, static_cast<double>(step_));
  for (Slot& slot : slots_) {
    const at::Tensor& grad = slot.param.grad();
    if (!grad.defined()) {
      continue;
    }
    LOOM_CHECK(grad.is_contiguous() && grad.scalar_type() == at::kFloat, "AdamW: gradient of ", slot.name,
               " must be contiguous float32");
    const StepScalars s{static_cast<float>(lr),
                        static_cast<float>(opts_.beta1),
                        static_cast<float>(opts_.beta2),
                        static_cast<float>(opts_.eps),
                        static_cast<float>(1.0 - lr * (slot.decay ? opts_.weight_decay : 0.0)),
                        static_cast<float>(lr / bias1),
                        static_cast<float>(std::sqrt(bias2))};
    float* p = slot.param.data_ptr<float>();
    const float* g = grad.data_ptr<float>();
    float* m = slot.exp_avg.data_ptr<float>();
    float* v = slot.exp_avg_sq.data_ptr<float>();
    at::parallel_for(0, slot.param.numel(), kGrain,
                     [&](int64_t begin, int64_t end) { updateRange(p, g, m, v, begin, end, s); });
  }
}

NamedTensors AdamW::stateTensors() const {
  NamedTensors state;
  state.reserve(2 * slots_.size());
  for (const Slot& slot : slots_) {
    state.emplace_back("exp_avg." + slot.name, slot.exp_avg);
    state.emplace_back("exp_avg_sq." + slot.name, slot.exp_avg_sq);
  }
  return state;
}

void AdamW::loadState(const NamedTensors& state, int64_t step_count) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  LOOM_CHECK_INPUT(by_name.size() == 2 * slots_.size(), "optimizer state holds ", by_name.size(),
                   " tensors but the model needs ", 2 * slots_.size(), ": the checkpoint belongs to a different model");
  for (Slot& slot : slots_) {
    for (auto* target : {&slot.exp_avg, &slot.exp_avg_sq}) {
      const std::string name = (target == &slot.exp_avg ? "exp_avg." : "exp_avg_sq.") + slot.name;
      auto it = by_name.find(name);
      LOOM_CHECK_INPUT(it != by_name.end(), "optimizer state lacks ", name,
                       ": the checkpoint belongs to a different model");
      LOOM_CHECK_INPUT(it->second.sizes() == target->sizes() && it->second.scalar_type() == at::kFloat,
                       "optimizer state ", name, " has shape ", it->second.sizes(), " but the model needs ",
                       target->sizes());
      target->copy_(it->second);
    }
  }
  step_ = step_count;
}

int64_t AdamW::stateBytes() const {
  int64_t bytes = 0;
  for (const Slot& slot : slots_) {
    bytes += 2 * slot.param.numel() * static_cast<int64_t>(sizeof(float));
  }
  return bytes;
}

}  // namespace loom::optim
