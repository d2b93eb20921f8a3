// Whether a job runs in elastic mode, read from the worker command line: the
// effective config of `loom-train --config FILE [--set section.field=value ...]`
// (docs/launcher.md "Elastic mode"). Elastic mode is on when its elastic.policy
// is REPLACE or SHRINK.
#pragma once

#include "runtime/config/options.h"

#include <optional>
#include <string>
#include <vector>

namespace loom::launcher {

/// The config a worker command line names: `--config FILE` or `--config=FILE`
/// (the last one wins) and every `--set X` / `--set=X`, in order. Scanning
/// stops at a bare `--`. A flag without its value is ignored.
struct ConfigArgs {
  std::optional<std::string> config;
  std::vector<std::string> overrides;
};

ConfigArgs findConfigArgs(const std::vector<std::string>& args);

struct ElasticMode {
  ElasticOptions options;
  std::string config_path;  ///< as the worker command line gives it
};

/// The elastic settings of the job `args` describes for `world_size` ranks;
/// nullopt when the args name no config or its policy is NONE. Throws InputError
/// (from the config loader) when the config cannot be read or is invalid.
std::optional<ElasticMode> elasticModeOf(const std::vector<std::string>& args, int world_size);

/// "REPLACE" / "SHRINK" / "NONE".
std::string policyName(ElasticPolicy policy);

/// The line logged at start: "elastic mode: policy shrink, min_ranks 2 (from --config job.pbtxt)".
std::string describeElasticMode(const ElasticMode& mode);

}  // namespace loom::launcher
