// Fuzzes the job-config loader (runtime/config/loader.h) with arbitrary text.
// The first byte picks the world size (1..4), the rest is the config text. Bad
// text must raise loom::InputError; any other exception, a crash or a sanitizer
// report is a bug. An accepted config must survive the effective-config round
// trip: its effective text parses back, for the same world size, to options
// whose effective text is identical.
#include "runtime/config/loader.h"
#include "runtime/core/error.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

void require(bool invariant) {
  if (!invariant) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int world_size = data[0] % 4 + 1;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  loom::JobOptions options;
  try {
    options = loom::config::parseJobConfig(text, "fuzz.pbtxt", {}, world_size);
  } catch (const loom::InputError&) {
    return 0;
  }
  const std::string effective = loom::config::effectiveConfigText(options);
  const loom::JobOptions again = loom::config::parseJobConfig(effective, "effective.pbtxt", {}, world_size);
  require(loom::config::effectiveConfigText(again) == effective);
  return 0;
}
