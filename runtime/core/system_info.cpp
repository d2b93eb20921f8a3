#include "runtime/core/system_info.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace loom {

std::string loadedBlasLibraries() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> found;
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string name = std::filesystem::path(path).filename().string();
    if (name.find("blas") != std::string::npos || name.find("lapack") != std::string::npos) {
      std::error_code ec;
      const auto real = std::filesystem::canonical(path, ec);
      found.insert(ec ? path : real.string());
    }
  }
  if (found.empty()) return "none";
  std::string joined;
  for (const auto& path : found) joined += (joined.empty() ? "" : ",") + path;
  return joined;
}

long long peakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      long long kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return -1;
}

}  // namespace loom
