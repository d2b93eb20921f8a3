#include "train/checkpoint/safetensors_header.h"

#include "runtime/core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <functional>
#include <set>

namespace loom::checkpoint {
namespace {

// ordered_json keeps the header's key order, which decides the order of
// zero-size tensors (they share offsets with their neighbours).
using Json = nlohmann::ordered_json;

struct DtypeInfo {
  std::string_view name;
  size_t item_size;
};
constexpr std::array<DtypeInfo, 10> kDtypes = {{{"F64", 8},
                                                {"F32", 4},
                                                {"F16", 2},
                                                {"BF16", 2},
                                                {"I64", 8},
                                                {"I32", 4},
                                                {"I16", 2},
                                                {"I8", 1},
                                                {"U8", 1},
                                                {"BOOL", 1}}};
constexpr std::array<std::string_view, 3> kEntryKeys = {"dtype", "shape", "data_offsets"};
constexpr size_t kMaxQuotedChars = 120;  // untrusted text quoted in messages is clipped to this

constexpr const char* kRecreate =
    " The file is corrupt or was not written as safetensors: re-create it (loom, or safetensors' save_file).";

std::string clip(std::string text) {
  if (text.size() > kMaxQuotedChars) {
    text.resize(kMaxQuotedChars);
    text += "...";
  }
  return text;
}

std::string dumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// A short rendering of an untrusted JSON value: scalars and flat arrays in
// full (clipped), anything nested by its type only, so a hostile header never
// makes a message (or a recursive dump) large.
std::string describe(const Json& value) {
  const bool flat_array = value.is_array() && value.size() <= 16 &&
                          std::all_of(value.begin(), value.end(), [](const Json& v) { return v.is_primitive(); });
  if (value.is_primitive() || flat_array) return clip(dumpJson(value));
  return c10::str("a JSON ", value.type_name(), " of ", value.size(), " elements");
}

std::string quoted(const std::string& name) {
  return clip(dumpJson(Json(name)));
}

std::string joinQuoted(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + quoted(name);
  return out;
}

std::string formatShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
  return out + "]";
}

[[noreturn]] void fail(const std::string& path, const std::string& tensor, const std::string& defect,
                       const char* fix = kRecreate) {
  const std::string where = tensor.empty() ? "" : ", tensor " + quoted(tensor);
  LOOM_THROW(InputError, "safetensors file \"", path, "\"", where, ": ", defect, ".", fix);
}

uint64_t decodeLength(std::string_view bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  return n;
}

// nlohmann keeps the last of two equal keys silently; this callback sees every
// key as it is parsed and remembers the first repeat.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        open_.emplace_back();
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        open_.pop_back();
        break;
      case Json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (open_.size() == 1) top_key_ = key;
        if (!open_.back().insert(key).second && duplicate_.empty()) {
          duplicate_ = key;
          duplicate_top_key_ = top_key_;
          duplicate_at_top_ = open_.size() == 1;
        }
        break;
      }
      case Json::parse_event_t::value:
        break;
    }
    return true;
  }

  void check(const std::string& path) const {
    if (duplicate_.empty()) return;
    if (duplicate_at_top_) fail(path, duplicate_, "the name appears twice in the JSON header");
    fail(path, duplicate_top_key_ == kSafetensorsMetadataKey ? "" : duplicate_top_key_,
         c10::str("key ", quoted(duplicate_), " appears twice in ",
                  duplicate_top_key_ == kSafetensorsMetadataKey ? "__metadata__" : "its entry"));
  }

 private:
  std::vector<std::set<std::string>> open_;  // keys seen per open container (arrays stay empty)
  std::string top_key_;
  std::string duplicate_;
  std::string duplicate_top_key_;
  bool duplicate_at_top_ = false;
};

Json parseJson(std::string_view text, const std::string& path) {
  DuplicateKeyFinder duplicates;
  Json root;
  try {
    root = Json::parse(text.begin(), text.end(), std::ref(duplicates), /*allow_exceptions=*/true);
  } catch (const Json::parse_error& e) {
    std::string detail = e.what();
    detail = detail.substr(detail.find("] ") == std::string::npos ? 0 : detail.find("] ") + 2);
    const size_t byte = std::max<size_t>(e.byte, 1);
    fail(path, "",
         c10::str("the JSON header (", text.size(), " bytes at file offset 8) has a syntax error at header byte ", byte,
                  " (file offset ", 8 + byte - 1, "): ", clip(detail)));
  } catch (const Json::exception& e) {
    fail(path, "", c10::str("the JSON header cannot be parsed: ", clip(e.what())));
  }
  duplicates.check(path);
  return root;
}

// A JSON integer in [0, max], or false.
bool readCount(const Json& value, uint64_t max, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
  } else if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(value.get<int64_t>());
  } else {
    return false;
  }
  return *out <= max;
}

std::map<std::string, std::string> parseMetadata(const Json& value, const std::string& path) {
  if (!value.is_object()) {
    fail(path, "", c10::str("\"__metadata__\" is ", describe(value), "; expected an object of string -> string"));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail(path, "",
           c10::str("\"__metadata__\" key ", quoted(key), " has value ", describe(item), "; expected a string"));
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

void checkEntryKeys(const std::string& name, const Json& value, const std::string& path) {
  if (!value.is_object()) {
    fail(path, name,
         c10::str("the entry is ", describe(value), "; expected an object {\"dtype\", \"shape\", \"data_offsets\"}"));
  }
  std::vector<std::string> missing;
  std::vector<std::string> extra;
  for (const auto key : kEntryKeys) {
    if (!value.contains(std::string(key))) missing.emplace_back(key);
  }
  for (const auto& [key, item] : value.items()) {
    if (std::find(kEntryKeys.begin(), kEntryKeys.end(), key) == kEntryKeys.end()) extra.push_back(key);
  }
  if (!missing.empty() || !extra.empty()) {
    fail(path, name,
         c10::str("the entry has keys missing [", joinQuoted(missing), "] and unexpected [", joinQuoted(extra),
                  "]; expected exactly \"dtype\", \"shape\", \"data_offsets\""));
  }
}

std::vector<int64_t> parseShape(const std::string& name, const Json& value, const std::string& path) {
  if (!value.is_array()) {
    fail(path, name, c10::str("\"shape\" is ", describe(value), "; expected an array of non-negative integers"));
  }
  std::vector<int64_t> shape;
  for (size_t i = 0; i < value.size(); ++i) {
    uint64_t dim = 0;
    if (!readCount(value[i], static_cast<uint64_t>(INT64_MAX), &dim)) {
      fail(path, name,
           c10::str("\"shape\" ", describe(value), " has dimension ", i, " = ", describe(value[i]),
                    "; expected an array of non-negative integers (each at most 2^63 - 1)"));
    }
    shape.push_back(static_cast<int64_t>(dim));
  }
  // The product of the non-zero dims bounds every contiguous stride; it must fit
  // int64 even when a zero dim makes the element count 0.
  uint64_t strides_bound = 1;
  for (const int64_t dim : shape) {
    if (__builtin_mul_overflow(strides_bound, static_cast<uint64_t>(std::max<int64_t>(dim, 1)), &strides_bound) ||
        strides_bound > static_cast<uint64_t>(INT64_MAX)) {
      fail(path, name, c10::str("\"shape\" ", formatShape(shape), " has more than 2^63 - 1 elements"));
    }
  }
  return shape;
}

TensorEntry parseEntry(const std::string& name, const Json& value, uint64_t data_size, const std::string& path) {
  if (name.empty()) fail(path, "", "a tensor has an empty name; every tensor needs a non-empty name");
  checkEntryKeys(name, value, path);
  TensorEntry entry;
  entry.name = name;

  const Json& dtype = value.at("dtype");
  const size_t item_size = dtype.is_string() ? safetensorsItemSize(dtype.get_ref<const std::string&>()) : 0;
  if (item_size == 0) {
    fail(path, name,
         c10::str("\"dtype\" ", describe(dtype), " is not supported; expected one of ", safetensorsDtypeList()),
         " Save the tensor in one of these dtypes (e.g. tensor.float() in PyTorch) and write the file again.");
  }
  entry.dtype = dtype.get<std::string>();
  entry.shape = parseShape(name, value.at("shape"), path);

  const Json& offsets = value.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !readCount(offsets[0], UINT64_MAX, &entry.begin) ||
      !readCount(offsets[1], UINT64_MAX, &entry.end) || entry.begin > entry.end) {
    fail(path, name,
         c10::str("\"data_offsets\" is ", describe(offsets),
                  "; expected two non-negative integers [begin, end] with begin <= end"));
  }
  if (entry.end > data_size) {
    fail(path, name,
         c10::str("\"data_offsets\" [", entry.begin, ", ", entry.end, "] ends beyond the data buffer of ", data_size,
                  " bytes"),
         " The file is truncated (an interrupted copy or download?) or corrupt: copy or re-create it.");
  }
  uint64_t numel = 1;
  for (const int64_t dim : entry.shape) numel *= static_cast<uint64_t>(dim);  // fits: parseShape bounded it
  uint64_t expected_bytes = 0;
  const bool overflow = __builtin_mul_overflow(numel, item_size, &expected_bytes);
  if (overflow || expected_bytes != entry.end - entry.begin) {
    fail(path, name,
         c10::str("\"data_offsets\" [", entry.begin, ", ", entry.end, "] span ", entry.end - entry.begin,
                  " bytes, but dtype ", entry.dtype, " with shape ", formatShape(entry.shape), " needs ", numel, " x ",
                  item_size, " = ", overflow ? std::string("more than 2^64") : std::to_string(expected_bytes),
                  " bytes"));
  }
  return entry;
}

// The tensors, sorted by offset, must tile [0, data_size) exactly.
void checkCoverage(const std::vector<TensorEntry>& tensors, uint64_t data_size, const std::string& path) {
  uint64_t cursor = 0;
  const TensorEntry* previous = nullptr;
  for (const auto& entry : tensors) {
    if (entry.begin < cursor) {
      fail(path, entry.name,
           c10::str("\"data_offsets\" [", entry.begin, ", ", entry.end, "] overlap tensor ", quoted(previous->name),
                    " at [", previous->begin, ", ", previous->end, "]"));
    }
    if (entry.begin > cursor) {
      fail(path, entry.name,
           c10::str("\"data_offsets\" [", entry.begin, ", ", entry.end, "] leave a hole: bytes [", cursor, ", ",
                    entry.begin, ") of the data buffer belong to no tensor"));
    }
    cursor = entry.end;
    previous = &entry;
  }
  if (cursor != data_size) {
    fail(path, "",
         c10::str("bytes [", cursor, ", ", data_size, ") at the end of the data buffer belong to no tensor (the ",
                  tensors.size(), " tensors cover ", cursor, " of ", data_size, " bytes)"));
  }
}

}  // namespace

size_t safetensorsItemSize(std::string_view dtype) {
  for (const auto& info : kDtypes) {
    if (info.name == dtype) return info.item_size;
  }
  return 0;
}

std::string safetensorsDtypeList() {
  std::string out;
  for (const auto& info : kDtypes) out += (out.empty() ? "" : ", ") + std::string(info.name);
  return out;
}

uint64_t safetensorsPrefixSize(std::string_view first_bytes, uint64_t file_size) {
  if (file_size < 8) return file_size;
  LOOM_CHECK(first_bytes.size() >= 8, "safetensorsPrefixSize needs the first 8 bytes, got ", first_bytes.size());
  const uint64_t n = decodeLength(first_bytes);
  return n > kMaxSafetensorsHeaderBytes || n > file_size - 8 ? 8 : 8 + n;
}

SafetensorsHeader parseSafetensorsHeader(std::string_view prefix, uint64_t file_size, const std::string& path) {
  if (file_size < 8) {
    fail(path, "", c10::str("the file is ", file_size, " bytes long, shorter than the 8-byte header length field"));
  }
  LOOM_CHECK(prefix.size() >= 8, "parseSafetensorsHeader needs the first 8 bytes of ", path);
  const uint64_t n = decodeLength(prefix);
  if (n > kMaxSafetensorsHeaderBytes) {
    fail(path, "",
         c10::str("the header length field says ", n, " bytes, more than the ", kMaxSafetensorsHeaderBytes,
                  "-byte (100 MiB) limit"));
  }
  if (n > file_size - 8) {
    fail(path, "",
         c10::str("the header length field says ", n, " bytes, but only ", file_size - 8,
                  " bytes follow it (file size ", file_size, ")"),
         " The file is truncated (an interrupted copy or download?) or not a safetensors file.");
  }
  LOOM_CHECK(prefix.size() >= 8 + n, "parseSafetensorsHeader needs the first ", 8 + n, " bytes of ", path, ", got ",
             prefix.size());

  const Json root = parseJson(prefix.substr(8, n), path);
  if (!root.is_object()) {
    fail(path, "",
         c10::str("the JSON header is ", describe(root),
                  "; expected an object mapping tensor names to {dtype, shape, data_offsets}"));
  }
  SafetensorsHeader header;
  header.data_start = 8 + n;
  const uint64_t data_size = file_size - header.data_start;
  for (const auto& [key, value] : root.items()) {
    if (key == kSafetensorsMetadataKey) {
      header.metadata = parseMetadata(value, path);
    } else {
      header.tensors.push_back(parseEntry(key, value, data_size, path));
    }
  }
  std::stable_sort(header.tensors.begin(), header.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  checkCoverage(header.tensors, data_size, path);
  return header;
}

}  // namespace loom::checkpoint
