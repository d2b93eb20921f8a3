#include "runtime/config/field_names.h"

#include "runtime/config/loom.pb.h"

#include <algorithm>
#include <vector>

namespace loom::config {

size_t editDistance(const std::string& a, const std::string& b) {
  // d[i][j] = distance between a[0, i) and b[0, j).
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) {
    d[i][0] = i;
  }
  for (size_t j = 0; j <= b.size(); ++j) {
    d[0][j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, substitute});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string closestName(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 0;
  for (const std::string& candidate : candidates) {
    const size_t distance = editDistance(name, candidate);
    if (best.empty() || distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  const size_t allowed = std::max<size_t>(2, std::max(name.size(), best.size()) / 3);
  return best_distance <= allowed ? best : std::string();
}

std::string sectionLabel(const google::protobuf::Descriptor& message) {
  const google::protobuf::Descriptor& root = *LoomConfig::descriptor();
  for (int i = 0; i < root.field_count(); ++i) {
    if (root.field(i)->message_type() == &message) {
      return root.field(i)->name();
    }
  }
  return "config";
}

std::vector<std::string> fieldNames(const google::protobuf::Descriptor& message) {
  std::vector<std::string> names;
  for (int i = 0; i < message.field_count(); ++i) {
    names.push_back(message.field(i)->name());
  }
  return names;
}

std::string unknownFieldMessage(const google::protobuf::Descriptor& message, const std::string& name) {
  const bool top_level = &message == LoomConfig::descriptor();
  const std::vector<std::string> names = fieldNames(message);
  std::string text = sectionLabel(message) + " has no " + (top_level ? "section" : "field") + " \"" + name + "\" (";
  const std::string hint = closestName(name, names);
  if (!hint.empty()) {
    text += "did you mean \"" + hint + "\"? ";
  }
  text += top_level ? "sections: " : "fields: ";
  for (size_t i = 0; i < names.size(); ++i) {
    text += (i == 0 ? "" : ", ") + names[i];
  }
  return text + ")";
}

std::string validEnumNames(const google::protobuf::EnumDescriptor& type) {
  std::string names;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() != 0) {
      names += (names.empty() ? "" : ", ") + type.value(i)->name();
    }
  }
  return names;
}

}  // namespace loom::config
