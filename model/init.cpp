#include "model/init.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace loom::model {
namespace {

bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void initializeParameters(LlamaImpl& model, at::Generator& generator) {
  c10::NoGradGuard no_grad;
  const ModelOptions& opts = model.options();
  const double residual_std = opts.init_std / std::sqrt(2.0 * static_cast<double>(opts.layers));
  for (auto& [name, param] : model.namedParameters()) {
    if (endsWith(name, "norm.weight")) {
      param.fill_(1.0);
    } else if (endsWith(name, "attn.wo.weight") || endsWith(name, "mlp.w2.weight")) {
      param.normal_(0.0, residual_std, generator);
    } else {
      param.normal_(0.0, opts.init_std, generator);
    }
  }
}

}  // namespace loom::model
