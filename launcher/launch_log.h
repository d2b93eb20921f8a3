// The launcher's own messages, on stderr: one write() per message so they never
// split a worker's line, prefixed "loom-launch: " ("loom-launch[node K]: " in a
// multi-node job, where several launchers may share a console). Single-threaded use.
#pragma once

#include <c10/util/StringUtil.h>

#include <string>
#include <utility>

namespace loom::launcher {

class LaunchLog {
 public:
  explicit LaunchLog(std::string prefix = "loom-launch: ") : prefix_(std::move(prefix)) {}

  template <typename... Args>
  void info(const Args&... args) const {
    block(prefix_ + c10::str(args...) + "\n");
  }

  /// Multi-line text as it is (the launch config, the failure summary).
  void block(const std::string& text) const;

 private:
  std::string prefix_;
};

}  // namespace loom::launcher
