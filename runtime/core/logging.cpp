#include "runtime/core/logging.h"

#include "runtime/core/error.h"

#include <ostream>
#include <sstream>

namespace loom {

LogLevel parseLogLevel(const std::string& text, const std::string& field) {
  if (text == "debug") return LogLevel::kDebug;
  if (text == "info") return LogLevel::kInfo;
  if (text == "warning") return LogLevel::kWarning;
  if (text == "error") return LogLevel::kError;
  LOOM_THROW(InputError, field, " (\"", text, "\") must be one of debug, info, warning, error");
}

Logger::Logger(std::ostream& out, const LoggerOptions& opts) : out_(out), opts_(opts) {}

void Logger::raw(const std::string& text) const {
  std::lock_guard<std::mutex> lock(mutex_);
  out_ << text << std::flush;
}

void Logger::write(LogLevel level, const std::string& message) const {
  if (level < opts_.level) {
    return;
  }
  static constexpr const char* kTags[] = {"D", "I", "W", "E"};
  std::ostringstream line;
  line << "[rank " << opts_.rank << "/" << opts_.world_size << "] " << kTags[static_cast<int>(level)] << " " << message
       << "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  out_ << line.str() << std::flush;
}

}  // namespace loom
