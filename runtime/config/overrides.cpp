#include "runtime/config/overrides.h"

#include "runtime/config/field_names.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <c10/util/StringUtil.h>

#include <memory>

namespace loom::config {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// ParseFieldValueFromString reports through a collector, and some tokenizer
// errors (an unterminated string) only show up there. The caller words the
// error itself, so only the fact is kept; nothing goes to stderr.
class FailureCollector : public google::protobuf::io::ErrorCollector {
 public:
#if GOOGLE_PROTOBUF_VERSION >= 4022000
  void RecordError(int, google::protobuf::io::ColumnNumber, absl::string_view) override {
    failed_ = true;
  }
#else
  void AddError(int, google::protobuf::io::ColumnNumber, const std::string&) override {
    failed_ = true;
  }
#endif
  bool failed() const {
    return failed_;
  }

 private:
  bool failed_ = false;
};

std::vector<std::string> split(const std::string& path, char separator) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (size_t end = path.find(separator); end != std::string::npos; end = path.find(separator, begin)) {
    parts.push_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  parts.push_back(path.substr(begin));
  return parts;
}

std::string typeName(const FieldDescriptor& field) {
  return field.type() == FieldDescriptor::TYPE_ENUM ? "one of " + validEnumNames(*field.enum_type())
                                                    : field.type_name();
}

// Parses `value` for `field` of a message of type `prototype` into a fresh
// message; nullptr when it does not parse.
std::unique_ptr<Message> parseValue(const std::string& value, const FieldDescriptor& field, const Message& prototype) {
  std::unique_ptr<Message> parsed(prototype.New());
  const bool quoted = !value.empty() && (value.front() == '"' || value.front() == '\'');
  if (field.type() == FieldDescriptor::TYPE_STRING && !quoted) {
    parsed->GetReflection()->SetString(parsed.get(), &field, value);
    return parsed;
  }
  FailureCollector collector;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  if (!parser.ParseFieldValueFromString(value, &field, parsed.get()) || collector.failed()) {
    return nullptr;
  }
  return parsed;
}

// Applies one override; returns the reason it is invalid, or "" when applied.
// The path is resolved on descriptors first so that a bad override changes nothing.
std::string applyOne(const std::string& text, LoomConfig& config, FieldOrigins& origins) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos) {
    return "expected section.field=value (e.g. --set model.heads=8)";
  }
  const std::string path = text.substr(0, equals);
  const std::string value = text.substr(equals + 1);
  std::vector<const FieldDescriptor*> fields;
  const google::protobuf::Descriptor* type = config.GetDescriptor();
  std::string walked;
  for (const std::string& name : split(path, '.')) {
    if (name.empty()) {
      return c10::str("empty name in \"", path, "\"; expected section.field=value (e.g. --set model.heads=8)");
    }
    if (type == nullptr) {
      return c10::str("\"", walked, "\" is a field (", typeName(*fields.back()), "), not a section");
    }
    const FieldDescriptor* field = type->FindFieldByName(name);
    if (field == nullptr) {
      return unknownFieldMessage(*type, name);
    }
    fields.push_back(field);
    walked += (walked.empty() ? "" : ".") + name;
    type = field->message_type();
  }
  if (type != nullptr) {
    std::string names;
    for (const std::string& name : fieldNames(*type)) {
      names += (names.empty() ? "" : ", ") + name;
    }
    return c10::str("\"", walked, "\" is a section, not a field; set one of its fields (", names, ")");
  }
  const Message* holder = &config;
  for (size_t i = 0; i + 1 < fields.size(); ++i) {
    holder = &holder->GetReflection()->GetMessage(*holder, fields[i]);
  }
  std::unique_ptr<Message> parsed = parseValue(value, *fields.back(), *holder);
  if (parsed == nullptr) {
    return c10::str("invalid value \"", value, "\" for ", walked, " (", typeName(*fields.back()), ")");
  }
  Message* message = &config;
  for (size_t i = 0; i + 1 < fields.size(); ++i) {
    message = message->GetReflection()->MutableMessage(message, fields[i]);
  }
  message->GetReflection()->SwapFields(message, parsed.get(), {fields.back()});
  origins[walked] = "--set " + text;
  return "";
}

}  // namespace

std::vector<std::string> applyOverrides(const std::vector<std::string>& overrides, LoomConfig& config,
                                        FieldOrigins& origins) {
  std::vector<std::string> errors;
  for (const std::string& text : overrides) {
    const std::string error = applyOne(text, config, origins);
    if (!error.empty()) {
      errors.push_back("--set " + text + ": " + error);
    }
  }
  return errors;
}

}  // namespace loom::config
