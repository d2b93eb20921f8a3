// Command-line overrides "--set section.field=value" applied on top of a
// parsed config (precedence: defaults < file < --set, last --set wins).
#pragma once

#include "runtime/config/loom.pb.h"
#include "runtime/config/validate.h"

#include <string>
#include <vector>

namespace loom::config {

/// Applies `overrides` ("section.field=value") to `config` in order and records
/// "section.field" -> "--set <override>" in `origins` for each. Values use text
/// format syntax (enum names, true/false, numbers); strings may be quoted or
/// not. Returns one message per bad override, each starting with
/// "--set <override>: " (missing '=', unknown section or field with the closest
/// valid name, a section instead of a field, a value of the wrong type); bad
/// overrides leave `config` unchanged.
std::vector<std::string> applyOverrides(const std::vector<std::string>& overrides, LoomConfig& config,
                                        FieldOrigins& origins);

}  // namespace loom::config
