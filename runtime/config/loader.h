// Job configs: protobuf text files (runtime/config/loom.proto, docs/config.md)
// turned into validated JobOptions. This is the only entry point the rest of
// loom needs; protobuf types stay behind it.
//
// Precedence: defaults (options.h) < the file < overrides, applied in order
// (the last one for a field wins). Relative paths in the config stay as
// written and resolve against the working directory of the process.
#pragma once

#include "runtime/config/options.h"

#include <string>
#include <vector>

namespace loom::config {

/// Reads `path`, applies `overrides` ("section.field=value", in order, after the file), converts to
/// JobOptions and validates for `world_size` ranks. Throws loom::InputError on any problem: an
/// unreadable file, every syntax error ("<path>:<line>:<col>: ..."), every bad override
/// ("--set <override>: ...") or every rule the result breaks, each prefixed with where the
/// offending value came from.
JobOptions loadJobConfig(const std::string& path, const std::vector<std::string>& overrides, int world_size);

/// Same from text; `source_name` is what error messages call the text (usually the path).
JobOptions parseJobConfig(const std::string& text, const std::string& source_name,
                          const std::vector<std::string>& overrides, int world_size);

/// The effective config in text format with EVERY field present (defaults included): printed once by
/// rank 0 and saved beside the run's outputs; parsing it back yields the same JobOptions.
std::string effectiveConfigText(const JobOptions& options);

}  // namespace loom::config
