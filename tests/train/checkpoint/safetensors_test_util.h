// Hand-built safetensors bytes: the independent reference the reader is checked
// against (nothing here calls loom's writer).
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>

namespace loom::test {

/// 8-byte little-endian length of `json`, `json` itself, then `data`.
inline std::string safetensorsBytes(const std::string& json, const std::string& data = "") {
  std::string out;
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + json + data;
}

/// The raw bytes of `values` as the host (little-endian) stores float32.
inline std::string floatBytes(std::initializer_list<float> values) {
  std::string out(values.size() * sizeof(float), '\0');
  std::memcpy(out.data(), values.begin(), out.size());
  return out;
}

}  // namespace loom::test
