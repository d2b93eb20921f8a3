// libFuzzer target for parseSafetensorsHeader: the input is a whole file.
// Rejection must be an InputError; any other exception, a crash or a sanitizer
// report is a bug, and so is an accepted header that breaks the documented
// guarantees checked below.
#include "runtime/core/error.h"
#include "train/checkpoint/safetensors_header.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace {

using loom::checkpoint::SafetensorsHeader;

void require(bool condition) {
  if (!condition) std::abort();
}

// An accepted header tiles the data buffer exactly with tensors whose byte
// counts match dtype x shape.
void checkAccepted(const SafetensorsHeader& header, uint64_t file_size) {
  require(header.data_start >= 8 && header.data_start <= file_size);
  uint64_t cursor = 0;
  for (const auto& entry : header.tensors) {
    require(!entry.name.empty() && entry.begin == cursor && entry.begin <= entry.end);
    uint64_t numel = 1;
    for (const int64_t dim : entry.shape) {
      require(dim >= 0);
      numel *= static_cast<uint64_t>(dim);
    }
    require(numel * loom::checkpoint::safetensorsItemSize(entry.dtype) == entry.end - entry.begin);
    cursor = entry.end;
  }
  require(cursor == file_size - header.data_start);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The parser may read only the prefix safetensorsPrefixSize names: give it an
  // exact-size heap copy so AddressSanitizer reports any read past it.
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  const uint64_t prefix_size = loom::checkpoint::safetensorsPrefixSize(file.substr(0, 8), size);
  const std::unique_ptr<char[]> prefix(new char[prefix_size]);
  if (prefix_size > 0) std::memcpy(prefix.get(), data, prefix_size);
  try {
    const SafetensorsHeader header =
        loom::checkpoint::parseSafetensorsHeader(std::string_view(prefix.get(), prefix_size), size, "fuzz.safetensors");
    checkAccepted(header, size);
  } catch (const loom::InputError&) {
  }
  return 0;
}
