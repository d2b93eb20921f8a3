// The one place where protobuf config messages become plain options and back
// (ARCHITECTURE.md §1). Only runtime/config, tools and tests include this.
#pragma once

#include "runtime/config/loom.pb.h"
#include "runtime/config/options.h"
#include "runtime/config/validate.h"

#include <vector>

namespace loom::config {

/// Copies the fields present in `config` over JobOptions{} (whose in-class
/// initialisers are the defaults); absent fields keep their default. An enum
/// set to its UNSPECIFIED value or to an unknown number keeps the default and
/// appends a Violation. Ranges are not checked here (see findViolations).
JobOptions fromProto(const LoomConfig& config, std::vector<Violation>& violations);

/// The config with every section and every field present: fromProto of it
/// yields `options` again, field for field.
LoomConfig toProto(const JobOptions& options);

}  // namespace loom::config
