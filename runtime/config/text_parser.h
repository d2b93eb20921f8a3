// Text-format parsing of a LoomConfig with user-facing errors and the file
// position of every field, so that later checks can point back into the file.
#pragma once

#include "runtime/config/loom.pb.h"
#include "runtime/config/validate.h"

#include <string>

namespace loom::config {

/// Parses `text` (protobuf text format; unknown fields rejected). Throws
/// loom::InputError holding every error of the parse, one per line as
/// "<source_name>:<line>:<col>: <message>" (1-based); an unknown field name gets
/// the closest valid name and the section's fields. On success records, for
/// every field the text set, "model.heads" -> "<source_name>:<line>:<col>" of
/// its name in `origins`.
LoomConfig parseConfigText(const std::string& text, const std::string& source_name, FieldOrigins& origins);

}  // namespace loom::config
