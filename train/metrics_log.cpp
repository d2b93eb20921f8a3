#include "train/metrics_log.h"

#include "runtime/core/error.h"
#include "runtime/core/file_util.h"

#include <nlohmann/json.hpp>

#include <sstream>

namespace loom::train {

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) {
  if (pathExists(path)) {
    std::istringstream in(readFile(path, "metrics file"));
    std::string kept;
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= resume_step) {
        kept += line + "\n";
      }
    }
    writeFileAtomically(path, kept);
  }
  out_.open(path, std::ios::app);
  LOOM_CHECK_INPUT(out_.good(), "cannot open metrics file \"", path, "\" for writing");
}

void MetricsLog::append(const std::string& json_line) {
  out_ << json_line << '\n';
  out_.flush();
}

}  // namespace loom::train
