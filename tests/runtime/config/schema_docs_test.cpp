// loom.proto, options.h and docs/config.md agree: every proto field is
// documented in docs/config.md with its type and default, its comment in
// loom.proto quotes the same default, and that default is what options.h's
// initialisers produce.
#include "runtime/config/convert.h"
#include "tests/support/test_util.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <sstream>

namespace loom::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

struct FieldInfo {
  std::string path;          // "model.dim"
  std::string type;          // "int64", "string", enum name "Order", ...
  std::string default_text;  // text format of the options.h default: "128", "\"runs/tiny\"", "SHUFFLED"
  const FieldDescriptor* field;
};

// Every leaf field of LoomConfig, walked through the descriptors.
std::vector<FieldInfo> allFields() {
  const LoomConfig defaults = toProto(JobOptions{});
  const Descriptor& root = *LoomConfig::descriptor();
  std::vector<FieldInfo> fields;
  for (int s = 0; s < root.field_count(); ++s) {
    const FieldDescriptor* section = root.field(s);
    const google::protobuf::Message& values = defaults.GetReflection()->GetMessage(defaults, section);
    for (int f = 0; f < section->message_type()->field_count(); ++f) {
      const FieldDescriptor* field = section->message_type()->field(f);
      FieldInfo info{section->name() + "." + field->name(),
                     field->type() == FieldDescriptor::TYPE_ENUM ? field->enum_type()->name() : field->type_name(), "",
                     field};
      google::protobuf::TextFormat::PrintFieldValueToString(values, field, -1, &info.default_text);
      fields.push_back(info);
    }
  }
  return fields;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    result.push_back(line);
  }
  return result;
}

std::string trim(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t");
  const size_t end = text.find_last_not_of(" \t");
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

// Cells of a Markdown table row "| a | b \| c |" -> {"a", "b \| c"}: an escaped pipe stays in its cell.
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> result;
  std::string cell;
  for (size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '|' && row[i - 1] != '\\') {
      result.push_back(trim(cell));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return result;
}

TEST(SchemaDocsTest, SchemaHasTheExpectedShape) {
  const std::vector<FieldInfo> fields = allFields();
  EXPECT_EQ(fields.size(), 75u);  // the fields of options.h, counted by hand
  EXPECT_EQ(LoomConfig::descriptor()->field_count(), 9);
  for (const FieldInfo& info : fields) {
    EXPECT_TRUE(info.field->has_presence()) << info.path << " must be optional";
  }
}

TEST(SchemaDocsTest, EveryFieldIsDocumentedWithTypeAndDefault) {
  const std::vector<std::string> doc = lines(test::readTextFile(test::sourcePath("docs/config.md")));
  for (const FieldInfo& info : allFields()) {
    const std::string key = "| `" + info.path + "` |";
    std::vector<std::string> row;
    for (const std::string& line : doc) {
      if (line.rfind(key, 0) == 0) {
        EXPECT_TRUE(row.empty()) << info.path << " documented twice";
        row = cells(line);
      }
    }
    if (row.size() < 5) {
      ADD_FAILURE() << "docs/config.md has no table row starting with " << key;
      continue;
    }
    EXPECT_EQ(row[1], info.type) << info.path;
    EXPECT_EQ(row[2], "`" + info.default_text + "`") << info.path;
    EXPECT_FALSE(row[4].empty()) << info.path << " needs a meaning";
  }
}

TEST(SchemaDocsTest, EveryProtoCommentQuotesTheDefault) {
  const std::vector<std::string> proto = lines(test::readTextFile(test::sourcePath("runtime/config/loom.proto")));
  for (const FieldInfo& info : allFields()) {
    // The message's opening line, then the field's declaration after it.
    const std::string opening = "message " + info.field->containing_type()->name() + " {";
    const std::string declaration = " " + info.field->name() + " = " + std::to_string(info.field->number()) + ";";
    size_t at = 0;
    while (at < proto.size() && proto[at] != opening) {
      ++at;
    }
    while (at < proto.size() && proto[at].find(declaration) == std::string::npos) {
      ++at;
    }
    if (at == proto.size()) {
      ADD_FAILURE() << info.path << ": no \"" << declaration << "\" after " << opening;
      continue;
    }
    std::string comment;
    for (size_t i = at; i > 0 && trim(proto[i - 1]).rfind("//", 0) == 0; --i) {
      comment = trim(proto[i - 1]).substr(2) + comment;
    }
    EXPECT_NE(comment.find("Default: " + info.default_text + "."), std::string::npos)
        << info.path << " comment lacks \"Default: " << info.default_text << ".\": " << comment;
  }
}

}  // namespace
}  // namespace loom::config
