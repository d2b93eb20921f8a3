// Rank-aware logging. Every line carries "[rank r/w]" so interleaved output from
// many ranks stays readable (ecosystem.md §6.7). A Logger is a value owned by
// whoever runs the job and passed down explicitly: no process-global logger.
#pragma once

#include <c10/util/StringUtil.h>

#include <iosfwd>
#include <mutex>
#include <string>

namespace loom {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

/// Parses "debug" | "info" | "warning" | "error"; throws InputError naming `field` otherwise.
LogLevel parseLogLevel(const std::string& text, const std::string& field);

struct LoggerOptions {
  int rank = 0;
  int world_size = 1;
  LogLevel level = LogLevel::kInfo;
};

/// Thread-safe line logger. REQUIRES: `out` outlives the Logger.
class Logger {
 public:
  explicit Logger(std::ostream& out, const LoggerOptions& opts = {});

  template <typename... Args>
  void debug(const Args&... args) const {
    write(LogLevel::kDebug, c10::str(args...));
  }
  template <typename... Args>
  void info(const Args&... args) const {
    write(LogLevel::kInfo, c10::str(args...));
  }
  template <typename... Args>
  void warning(const Args&... args) const {
    write(LogLevel::kWarning, c10::str(args...));
  }
  template <typename... Args>
  void error(const Args&... args) const {
    write(LogLevel::kError, c10::str(args...));
  }

  /// Writes `text` without prefix or level filter (progress lines, the effective config).
  void raw(const std::string& text) const;

  const LoggerOptions& options() const { return opts_; }

 private:
  void write(LogLevel level, const std::string& message) const;

  std::ostream& out_;
  LoggerOptions opts_;
  mutable std::mutex mutex_;
};

}  // namespace loom
