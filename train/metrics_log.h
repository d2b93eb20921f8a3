// The run's metrics file, <out_dir>/metrics.jsonl: one JSON object per logged step.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace loom::train {

class MetricsLog {
 public:
  /// Opens `path` for appending. When a run resumes from step `resume_step`,
  /// lines of steps after it (written before a crash, about to be redone) are
  /// dropped first, so the file never holds a step twice.
  MetricsLog(const std::string& path, int64_t resume_step);

  void append(const std::string& json_line);

 private:
  std::ofstream out_;
};

}  // namespace loom::train
