#include "optim/outer/flat_parameters.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>

namespace loom::optim::outer {

FlatParameters::FlatParameters(NamedTensors params) : params_(std::move(params)) {
  offsets_.push_back(0);
  for (const auto& [name, p] : params_) {
    LOOM_CHECK_INPUT(p.scalar_type() == at::kFloat && p.device().is_cpu(), "outer optimizer: parameter ", name, " is ",
                     p.scalar_type(), " on ", p.device(), "; outer optimizers take float32 CPU parameters");
    numel_ += p.numel();
    offsets_.push_back(numel_);
  }
}

std::vector<FlatRange> FlatParameters::fragments(int64_t count, const std::vector<int64_t>& sizes) const {
  const auto params = static_cast<int64_t>(params_.size());
  LOOM_CHECK_INPUT(count >= 1 && count <= params, "outer.fragments (", count, ") must be between 1 and the ", params,
                   " parameter tensors: fragments are cut at parameter boundaries");
  LOOM_CHECK(sizes.empty() || static_cast<int64_t>(sizes.size()) == params, "outer: ", sizes.size(),
             " fragment sizes for ", params, " parameters");
  // The cuts are chosen on `weights` (the element counts unless given) and returned as flat ranges.
  std::vector<int64_t> weights = offsets_;
  if (!sizes.empty()) {
    for (int64_t i = 0; i < params; ++i) weights[i + 1] = weights[i] + sizes[static_cast<size_t>(i)];
  }
  std::vector<FlatRange> ranges;
  int64_t first = 0;  // first parameter of the fragment being cut
  for (int64_t f = 0; f < count; ++f) {
    // End this fragment at the parameter boundary closest to (f + 1) / count of
    // the weight, leaving at least one parameter for each later fragment.
    int64_t last = count - f - 1 == 0 ? params : first + 1;
    if (last < params) {
      const double target = static_cast<double>(weights.back()) * static_cast<double>(f + 1) / static_cast<double>(count);
      const int64_t limit = params - (count - f - 1);
      while (last < limit && std::abs(static_cast<double>(weights[last + 1]) - target) <
                                 std::abs(static_cast<double>(weights[last]) - target)) {
        ++last;
      }
    }
    ranges.push_back({offsets_[first], offsets_[last]});
    first = last;
  }
  return ranges;
}

void FlatParameters::gather(at::Tensor& flat, FlatRange range) const {
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t begin = std::max(offsets_[i], range.begin);
    const int64_t end = std::min(offsets_[i + 1], range.end);
    if (begin >= end) continue;
    flat.narrow(0, begin, end - begin).copy_(params_[i].second.reshape(-1).narrow(0, begin - offsets_[i], end - begin));
  }
}

void FlatParameters::scatter(const at::Tensor& flat, FlatRange range) const {
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t begin = std::max(offsets_[i], range.begin);
    const int64_t end = std::min(offsets_[i + 1], range.end);
    if (begin >= end) continue;
    at::Tensor dst = params_[i].second.view(-1).narrow(0, begin - offsets_[i], end - begin);
    dst.copy_(flat.narrow(0, begin, end - begin));
  }
}

}  // namespace loom::optim::outer
