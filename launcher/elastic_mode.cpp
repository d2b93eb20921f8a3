#include "launcher/elastic_mode.h"

#include "runtime/config/loader.h"

#include <c10/util/StringUtil.h>

#include <cctype>

namespace loom::launcher {
namespace {

/// The value of `flag` at args[*i] ("--flag V" or "--flag=V"), advancing *i past it.
std::optional<std::string> flagValue(const std::vector<std::string>& args, size_t* i, const std::string& flag) {
  const std::string& arg = args[*i];
  if (arg == flag) {
    if (*i + 1 >= args.size()) return std::nullopt;
    return args[++*i];
  }
  if (arg.rfind(flag + "=", 0) == 0) return arg.substr(flag.size() + 1);
  return std::nullopt;
}

}  // namespace

ConfigArgs findConfigArgs(const std::vector<std::string>& args) {
  ConfigArgs found;
  for (size_t i = 0; i < args.size() && args[i] != "--"; ++i) {
    if (auto config = flagValue(args, &i, "--config")) {
      found.config = std::move(config);
    } else if (auto override_text = flagValue(args, &i, "--set")) {
      found.overrides.push_back(std::move(*override_text));
    }
  }
  return found;
}

std::optional<ElasticMode> elasticModeOf(const std::vector<std::string>& args, int world_size) {
  const ConfigArgs found = findConfigArgs(args);
  if (!found.config) return std::nullopt;
  const JobOptions job = config::loadJobConfig(*found.config, found.overrides, world_size);
  if (!job.elastic.enabled()) return std::nullopt;
  return ElasticMode{job.elastic, *found.config};
}

std::string policyName(ElasticPolicy policy) {
  switch (policy) {
    case ElasticPolicy::kNone:
      return "NONE";
    case ElasticPolicy::kReplace:
      return "REPLACE";
    case ElasticPolicy::kShrink:
      return "SHRINK";
  }
  return "policy " + std::to_string(static_cast<int>(policy));
}

std::string describeElasticMode(const ElasticMode& mode) {
  std::string policy = policyName(mode.options.policy);
  for (char& c : policy) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c10::str("elastic mode: policy ", policy, ", min_ranks ", mode.options.min_ranks,
                  mode.options.max_ranks > 0 ? c10::str(", max_ranks ", mode.options.max_ranks) : std::string(),
                  " (from --config ", mode.config_path, ")");
}

}  // namespace loom::launcher
