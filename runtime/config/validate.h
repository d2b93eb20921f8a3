// Rules every JobOptions must satisfy before a job starts (docs/config.md),
// checked all at once so that one run reports every problem.
#pragma once

#include "runtime/config/options.h"

#include <map>
#include <string>
#include <vector>

namespace loom::config {

/// One broken rule. `fields` are the config paths involved ("model.heads"),
/// the one most likely to be wrong first; `message` names them with their values.
struct Violation {
  std::vector<std::string> fields;
  std::string message;
};

/// Where explicitly set fields came from, by path: "model.heads" ->
/// "job.pbtxt:4:3" (the file) or "--set model.heads=6" (an override).
/// Fields absent from the map have their default.
using FieldOrigins = std::map<std::string, std::string>;

/// Every rule `options` breaks for a job of `world_size` ranks (>= 1), in
/// section order; empty when the options are valid.
std::vector<Violation> findViolations(const JobOptions& options, int world_size);

/// One line per violation, prefixed with "<origin>: " of the first of its
/// fields that `origins` knows (defaults get no prefix), joined by newlines.
std::string formatViolations(const std::vector<Violation>& violations, const FieldOrigins& origins);

/// Throws loom::InputError listing every violation when `options` is invalid
/// for `world_size` ranks, or when world_size < 1.
void validate(const JobOptions& options, int world_size);

}  // namespace loom::config
