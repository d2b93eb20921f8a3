#include "runtime/config/text_parser.h"

#include "runtime/config/field_names.h"
#include "runtime/core/error.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <c10/util/StringUtil.h>

#include <cctype>

namespace loom::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::TextFormat;

// A 0-based position as protobuf's tokenizer counts it: a tab advances the
// column to the next multiple of 8.
struct Position {
  int line = 0;
  int column = 0;
};

Position advance(Position position, char c) {
  if (c == '\n') {
    return {position.line + 1, 0};
  }
  return {position.line, c == '\t' ? position.column + 8 - position.column % 8 : position.column + 1};
}

// Byte offset of `target` in `text`, or text.size() when it lies past the end.
size_t offsetOf(const std::string& text, Position target) {
  Position position;
  for (size_t offset = 0; offset < text.size(); ++offset) {
    if (position.line > target.line || (position.line == target.line && position.column >= target.column)) {
      return offset;
    }
    position = advance(position, text[offset]);
  }
  return text.size();
}

Position positionOf(const std::string& text, size_t offset) {
  Position position;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    position = advance(position, text[i]);
  }
  return position;
}

// protobuf reports a bad field name or enum value at the token after it; users
// expect the name itself. Moves `reported` back over whitespace to the start of `name`
// when the text there is `name`, else keeps it.
Position startOfName(const std::string& text, Position reported, const std::string& name) {
  size_t end = offsetOf(text, reported);
  while (end > 0 && std::isspace(static_cast<unsigned char>(text[end - 1]))) {
    --end;
  }
  if (name.empty() || end < name.size() || text.compare(end - name.size(), name.size(), name) != 0) {
    return reported;
  }
  return positionOf(text, end - name.size());
}

// The text between `prefix` and the next quote in `message`, or "" when absent.
std::string quotedAfter(const std::string& message, const std::string& prefix) {
  const size_t begin = message.find(prefix);
  if (begin == std::string::npos) {
    return "";
  }
  const size_t name_begin = begin + prefix.size();
  const size_t name_end = message.find('"', name_begin);
  return name_end == std::string::npos ? "" : message.substr(name_begin, name_end - name_begin);
}

// Keeps every error of one parse, formatted as "<source>:<line>:<col>: ...".
// Rewrites protobuf's unknown-field message ("Message type \"loom.config.ModelConfig\"
// has no field named \"haeds\".") into one with a suggestion; messages worded
// differently by another protobuf version pass through and only lose the hint.
// protobuf 22 renamed the callback (AddError -> RecordError, absl::string_view).
class Collector : public google::protobuf::io::ErrorCollector {
 public:
  Collector(const std::string& text, const std::string& source_name) : text_(text), source_name_(source_name) {}

#if GOOGLE_PROTOBUF_VERSION >= 4022000
  void RecordError(int line, google::protobuf::io::ColumnNumber column, absl::string_view message) override {
    add({line, column}, std::string(message));
  }
#else
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    add({line, column}, message);
  }
#endif

  const std::string& errors() const {
    return errors_;
  }

 private:
  void add(Position position, std::string message) {
    const std::string type_name = quotedAfter(message, "Message type \"");
    const std::string unknown = quotedAfter(message, "\" has no field named \"");
    const std::string repeated = quotedAfter(message, "Non-repeated field \"");
    const std::string bad_enum = quotedAfter(message, "Unknown enumeration value of \"");
    const Descriptor* type = LoomConfig::descriptor()->file()->pool()->FindMessageTypeByName(type_name);
    if (type != nullptr && !unknown.empty()) {
      message = unknownFieldMessage(*type, unknown);
      position = startOfName(text_, position, unknown);
    } else if (!repeated.empty()) {
      position = startOfName(text_, position, repeated);
    } else if (!bad_enum.empty()) {
      position = startOfName(text_, position, bad_enum);
    } else if (message.size() >= 5 && message.compare(message.size() - 5, 5, "got: ") == 0) {
      message += "end of file";
    }
    if (!errors_.empty()) {
      errors_ += "\n";
    }
    // protobuf counts lines and columns from 0; editors and compilers from 1.
    errors_ += position.line < 0
                   ? c10::str(source_name_, ": ", message)
                   : c10::str(source_name_, ":", position.line + 1, ":", position.column + 1, ": ", message);
  }

  const std::string& text_;
  const std::string& source_name_;
  std::string errors_;
};

void recordOrigins(const LoomConfig& config, const TextFormat::ParseInfoTree& tree, const std::string& source_name,
                   FieldOrigins& origins) {
  const Descriptor& root = *LoomConfig::descriptor();
  const google::protobuf::Reflection& reflection = *config.GetReflection();
  for (int s = 0; s < root.field_count(); ++s) {
    const google::protobuf::FieldDescriptor* section = root.field(s);
    const TextFormat::ParseInfoTree* nested =
        reflection.HasField(config, section) ? tree.GetTreeForNested(section, -1) : nullptr;
    if (nested == nullptr) {
      continue;
    }
    const Descriptor& fields = *section->message_type();
    for (int f = 0; f < fields.field_count(); ++f) {
      const TextFormat::ParseLocation location = nested->GetLocation(fields.field(f), -1);
      if (location.line >= 0) {
        origins[section->name() + "." + fields.field(f)->name()] =
            c10::str(source_name, ":", location.line + 1, ":", location.column + 1);
      }
    }
  }
}

}  // namespace

LoomConfig parseConfigText(const std::string& text, const std::string& source_name, FieldOrigins& origins) {
  Collector collector(text, source_name);
  TextFormat::ParseInfoTree tree;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  parser.WriteLocationsTo(&tree);
  parser.AllowUnknownField(false);
  parser.AllowUnknownExtension(false);
  LoomConfig config;
  const bool ok = parser.ParseFromString(text, &config);
  LOOM_CHECK_INPUT(ok && collector.errors().empty(),
                   collector.errors().empty() ? source_name + ": not a valid config" : collector.errors());
  recordOrigins(config, tree, source_name, origins);
  return config;
}

}  // namespace loom::config
