// Names of config sections and fields as users write them, and the "did you
// mean" hints that unknown names get.
#pragma once

#include <string>
#include <vector>

namespace google::protobuf {
class Descriptor;
class EnumDescriptor;
}  // namespace google::protobuf

namespace loom::config {

/// Optimal-string-alignment distance: insertions, deletions, substitutions and
/// swaps of two adjacent characters ("haeds" -> "heads") each cost 1.
size_t editDistance(const std::string& a, const std::string& b);

/// The candidate closest to `name` by edit distance, or "" when even the
/// closest one is more than max(2, a third of the longer name) edits away
/// (no useful hint).
std::string closestName(const std::string& name, const std::vector<std::string>& candidates);

/// How messages call a config message: "config" for LoomConfig, else the name
/// of the LoomConfig section that holds it ("model" for ModelConfig).
std::string sectionLabel(const google::protobuf::Descriptor& message);

/// The field names of `message` in declaration order.
std::vector<std::string> fieldNames(const google::protobuf::Descriptor& message);

/// `model has no field "haeds" (did you mean "heads"? fields: vocab_size, dim, ...)`,
/// or for LoomConfig `config has no section "modle" (did you mean "model"? sections: ...)`.
std::string unknownFieldMessage(const google::protobuf::Descriptor& message, const std::string& name);

/// The names a config may use for `type`: every value but the UNSPECIFIED zero,
/// in declaration order, joined by ", " ("SHUFFLED, SEQUENTIAL").
std::string validEnumNames(const google::protobuf::EnumDescriptor& type);

}  // namespace loom::config
