// loom's outer optimizers (DiLoCo, NoLoCo, CO2; optim/outer/outer_optimizer.h) as a
// TorchScript class, torch.classes.loom.OuterOptimizer in Python:
//
//   comm = torch.classes.loom.Communicator("gloo", 600.0)
//   outer = torch.classes.loom.OuterOptimizer(comm, list(model.named_parameters()), "diloco",
//                                             {"sync_every": 50, "codec": "fp16"}, seed)
//   for step in range(1, steps + 1):
//       loss.backward(); inner.step(); inner.zero_grad(); outer.step(step)
//   outer.finish(); outer.stats(); outer.state_dict(); outer.load_state_dict(d)
//
// Every rank of `comm` is one replica. The optimizer splits a communicator of its
// own off `comm` when it is built, so every rank must build it at the same point
// of its program (as with any collective), and `comm` stays free for other uses.
// Parameters must be float32 CPU tensors, equal on every rank when it is built;
// they change in place at syncs.
//
// Compiled only into libloom_torch.so (loom/CMakeLists.txt), after
// parallel/torch/register.cpp, whose Communicator class must be registered first.
#include "optim/outer/outer_optimizer.h"
#include "parallel/torch/communicator_class.h"
#include "runtime/config/options.h"
#include "runtime/config/validate.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/util/StringUtil.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace loom::optim::outer {
namespace {

using OptionDict = c10::Dict<std::string, c10::IValue>;
using NamedParameter = std::tuple<std::string, at::Tensor>;

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

OuterAlgorithm parseAlgorithm(const std::string& name) {
  const std::string key = lower(name);
  if (key == "diloco") return OuterAlgorithm::kDiLoCo;
  if (key == "noloco") return OuterAlgorithm::kNoLoCo;
  if (key == "co2") return OuterAlgorithm::kCo2;
  LOOM_THROW(InputError, "OuterOptimizer: algorithm \"", name, "\" must be one of diloco, noloco, co2");
}

PseudoGradientCodec parseCodec(const std::string& name) {
  const std::string key = lower(name);
  if (key == "fp32") return PseudoGradientCodec::kFp32;
  if (key == "fp16") return PseudoGradientCodec::kFp16;
  if (key == "bf16") return PseudoGradientCodec::kBf16;
  if (key == "uint8_minmax") return PseudoGradientCodec::kUint8MinMax;
  if (key == "uint8_lut") return PseudoGradientCodec::kUint8Lut;
  LOOM_THROW(InputError, "OuterOptimizer: option codec \"", name,
             "\" must be one of fp32, fp16, bf16, uint8_minmax, uint8_lut");
}

/// The Python type a dict value arrived as.
std::string pythonType(const c10::IValue& value) {
  if (value.isBool()) return "bool";
  if (value.isInt()) return "int";
  if (value.isDouble()) return "float";
  if (value.isString()) return "str";
  if (value.isNone()) return "None";
  return value.tagKind();
}

[[noreturn]] void badValue(const std::string& key, const c10::IValue& value, const char* wanted) {
  LOOM_THROW(InputError, "OuterOptimizer: option ", key, " = ", value, " (", pythonType(value), ") must be ", wanted);
}

int64_t asInt(const std::string& key, const c10::IValue& value) {
  if (!value.isInt()) badValue(key, value, "an int");
  return value.toInt();
}

double asFloat(const std::string& key, const c10::IValue& value) {
  if (!value.isDouble() && !value.isInt()) badValue(key, value, "a number");
  const double x = value.isDouble() ? value.toDouble() : static_cast<double>(value.toInt());
  if (!std::isfinite(x)) badValue(key, value, "finite");
  return x;
}

bool asBool(const std::string& key, const c10::IValue& value) {
  if (!value.isBool()) badValue(key, value, "a bool");
  return value.toBool();
}

// The keys of the options dict: OuterOptions' fields (docs/outer.md) but
// `algorithm` (an argument of its own) and `replicas` (each rank of the
// communicator is one replica here).
using Setter = std::function<void(OuterOptions&, const std::string&, const c10::IValue&)>;

const std::vector<std::pair<std::string, Setter>>& optionSetters() {
  static const std::vector<std::pair<std::string, Setter>> setters = {
      {"sync_every", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.sync_every = asInt(k, v); }},
      {"lr", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.lr = asFloat(k, v); }},
      {"momentum", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.momentum = asFloat(k, v); }},
      {"nesterov", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.nesterov = asBool(k, v); }},
      {"codec",
       [](OuterOptions& o, const std::string& k, const c10::IValue& v) {
         if (!v.isString()) badValue(k, v, "a string");
         o.codec = parseCodec(v.toStringRef());
       }},
      {"fragments", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.fragments = asInt(k, v); }},
      {"fragment_delay",
       [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.fragment_delay = asInt(k, v); }},
      {"fragment_alpha",
       [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.fragment_alpha = asFloat(k, v); }},
      {"delayed", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.delayed = asBool(k, v); }},
      {"group_size", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.group_size = asInt(k, v); }},
      {"consensus", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.consensus = asFloat(k, v); }},
      {"staleness_penalty",
       [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.staleness_penalty = asFloat(k, v); }},
      {"clip", [](OuterOptions& o, const std::string& k, const c10::IValue& v) { o.clip = asFloat(k, v); }},
  };
  return setters;
}

/// The options for a world of `world_size` replicas; throws InputError naming
/// every unknown key, or every rule (runtime/config/validate.h) they break.
OuterOptions parseOptions(const std::string& algorithm, const OptionDict& dict, int world_size) {
  OuterOptions opts;
  opts.algorithm = parseAlgorithm(algorithm);
  const auto& setters = optionSetters();
  for (const auto& entry : dict) {
    const std::string& key = entry.key();
    const auto setter = std::find_if(setters.begin(), setters.end(), [&](const auto& s) { return s.first == key; });
    if (setter == setters.end()) {
      std::vector<std::string> keys;
      for (const auto& s : setters) keys.push_back(s.first);
      LOOM_THROW(InputError, "OuterOptimizer: unknown option \"", key, "\"; valid options are ", c10::Join(", ", keys));
    }
    setter->second(opts, key, entry.value());
  }
  // The config's own rules, on a job that differs from the defaults in its outer section only.
  JobOptions job;
  job.outer = opts;
  std::vector<std::string> problems;
  for (const config::Violation& violation : config::findViolations(job, world_size)) {
    if (violation.fields.empty() || violation.fields.front().rfind("outer.", 0) != 0) continue;
    std::string message = violation.message;
    c10::ReplaceAll(message, "outer.", "");  // the dict's keys have no section
    problems.push_back(std::move(message));
  }
  LOOM_CHECK_INPUT(problems.empty(), "OuterOptimizer: ", c10::Join("; ", problems));
  return opts;
}

class OuterOptimizerClass : public torch::CustomClassHolder {
 public:
  OuterOptimizerClass(c10::intrusive_ptr<parallel::CommunicatorClass> comm, std::vector<NamedParameter> params,
                      const std::string& algorithm, OptionDict options, int64_t seed)
      : parent_(std::move(comm)) {
    const OuterOptions opts = parseOptions(algorithm, options, static_cast<int>(parent_->size()));
    LOOM_CHECK_INPUT(!params.empty(), "OuterOptimizer: no parameters");
    NamedTensors named;
    std::set<std::string> names;
    for (auto& [name, p] : params) {
      LOOM_CHECK_INPUT(p.defined() && p.is_contiguous(), "OuterOptimizer: parameter ", name,
                       " must be a defined, contiguous tensor");
      LOOM_CHECK_INPUT(names.insert(name).second, "OuterOptimizer: parameter name ", name, " appears twice");
      named.emplace_back(name, p);
    }
    // The exchanges run on a communicator of their own (outer_optimizer.h); every rank splits here.
    std::vector<int> everyone(static_cast<size_t>(parent_->size()));
    std::iota(everyone.begin(), everyone.end(), 0);
    comm_ = parent_->comm().split(everyone);
    outer_ = makeOuterOptimizer(std::move(named), *comm_, opts, static_cast<uint64_t>(seed));
  }

  /// After inner step `step`: 1, 2, ... consecutively; after load_state_dict() any step >= 1 may come next.
  void step(int64_t step) {
    LOOM_CHECK_INPUT(step >= 1 && (last_step_ < 0 || step == last_step_ + 1), "OuterOptimizer.step(", step,
                     "): steps count from 1, one call after each inner step (the previous call was step ", last_step_,
                     ")");
    comm_->setStep(step);
    outer_->afterInnerStep(step);
    last_step_ = step;
  }

  void finish() { outer_->finish(); }

  /// syncs, comm_ms, exposed_ms (cumulative) and state_bytes.
  c10::Dict<std::string, double> stats() const {
    const OuterStats& s = outer_->stats();
    c10::Dict<std::string, double> out;
    out.insert("syncs", static_cast<double>(s.syncs));
    out.insert("comm_ms", s.comm_ms);
    out.insert("exposed_ms", s.exposed_ms);
    out.insert("state_bytes", static_cast<double>(outer_->stateBytes()));
    return out;
  }

  /// Copies of the outer state ("outer.global", "outer.momentum", ...).
  c10::Dict<std::string, at::Tensor> stateDict() {
    c10::Dict<std::string, at::Tensor> out;
    for (const auto& [name, t] : outer_->stateTensors()) out.insert(name, t.clone());
    return out;
  }

  void loadStateDict(const c10::Dict<std::string, at::Tensor>& state) {
    NamedTensors named;
    for (const auto& entry : state) named.emplace_back(entry.key(), entry.value());
    outer_->loadState(named);
    last_step_ = -1;
  }

 private:
  c10::intrusive_ptr<parallel::CommunicatorClass> parent_;  // outlives comm_, which its world spawned
  std::unique_ptr<dist::Communicator> comm_;
  std::unique_ptr<OuterOptimizer> outer_;  // after comm_: destroyed first
  int64_t last_step_ = 0;                  // -1: unknown (after a load)
};

}  // namespace
}  // namespace loom::optim::outer

TORCH_LIBRARY_FRAGMENT(loom, m) {
  using loom::optim::outer::NamedParameter;
  using loom::optim::outer::OptionDict;
  using loom::optim::outer::OuterOptimizerClass;
  using loom::parallel::CommunicatorClass;
  m.class_<OuterOptimizerClass>("OuterOptimizer")
      .def(torch::init<c10::intrusive_ptr<CommunicatorClass>, std::vector<NamedParameter>, std::string, OptionDict,
                       int64_t>(),
           "OuterOptimizer(comm, params: List[Tuple[str, Tensor]], algorithm: str, options: Dict[str, Any] = {}, seed: "
           "int = 0)",
           {torch::arg("comm"), torch::arg("params"), torch::arg("algorithm"),
            torch::arg("options") = c10::IValue(c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get())),
            torch::arg("seed") = 0})
      .def("step", &OuterOptimizerClass::step)
      .def("finish", &OuterOptimizerClass::finish)
      .def("stats", &OuterOptimizerClass::stats)
      .def("state_dict", &OuterOptimizerClass::stateDict)
      .def("load_state_dict", &OuterOptimizerClass::loadStateDict);
}
