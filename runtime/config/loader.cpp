#include "runtime/config/loader.h"

#include "runtime/config/convert.h"
#include "runtime/config/overrides.h"
#include "runtime/config/text_parser.h"
#include "runtime/config/validate.h"
#include "runtime/core/error.h"
#include "runtime/core/file_util.h"

#include <google/protobuf/text_format.h>

namespace loom::config {

JobOptions loadJobConfig(const std::string& path, const std::vector<std::string>& overrides, int world_size) {
  return parseJobConfig(readFile(path, "config file"), path, overrides, world_size);
}

JobOptions parseJobConfig(const std::string& text, const std::string& source_name,
                          const std::vector<std::string>& overrides, int world_size) {
  LOOM_CHECK_INPUT(world_size >= 1, "the world size (", world_size, ") must be >= 1");
  FieldOrigins origins;
  LoomConfig config = parseConfigText(text, source_name, origins);
  const std::vector<std::string> override_errors = applyOverrides(overrides, config, origins);
  if (!override_errors.empty()) {
    std::string message;
    for (const std::string& error : override_errors) {
      message += (message.empty() ? "" : "\n") + error;
    }
    LOOM_THROW(InputError, message);
  }
  std::vector<Violation> violations;
  const JobOptions options = fromProto(config, violations);
  for (Violation& violation : findViolations(options, world_size)) {
    violations.push_back(std::move(violation));
  }
  LOOM_CHECK_INPUT(violations.empty(), formatViolations(violations, origins));
  return options;
}

std::string effectiveConfigText(const JobOptions& options) {
  std::string text;
  const bool printed = google::protobuf::TextFormat::PrintToString(toProto(options), &text);
  LOOM_CHECK(printed, "could not print the effective config");
  return text;
}

}  // namespace loom::config
