#include "train/checkpoint/safetensors.h"

#include "runtime/core/atomic_file_writer.h"
#include "runtime/core/error.h"
#include "train/checkpoint/safetensors_header.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>

// safetensors stores little-endian; loom copies tensor bytes as the host holds them.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "loom's safetensors I/O assumes a little-endian host");

namespace loom::checkpoint {
namespace {

using Json = nlohmann::ordered_json;

struct DtypeName {
  const char* name;
  at::ScalarType type;
};
constexpr std::array<DtypeName, 10> kDtypeNames = {{{"F64", at::ScalarType::Double},
                                                    {"F32", at::ScalarType::Float},
                                                    {"F16", at::ScalarType::Half},
                                                    {"BF16", at::ScalarType::BFloat16},
                                                    {"I64", at::ScalarType::Long},
                                                    {"I32", at::ScalarType::Int},
                                                    {"I16", at::ScalarType::Short},
                                                    {"I8", at::ScalarType::Char},
                                                    {"U8", at::ScalarType::Byte},
                                                    {"BOOL", at::ScalarType::Bool}}};

std::optional<std::string> safetensorsName(at::ScalarType type) {
  for (const auto& entry : kDtypeNames) {
    if (entry.type == type) return std::string(entry.name);
  }
  return std::nullopt;
}

at::ScalarType scalarTypeOf(const std::string& name) {
  for (const auto& entry : kDtypeNames) {
    if (name == entry.name) return entry.type;
  }
  LOOM_THROW(c10::Error, "dtype ", name, " passed parseSafetensorsHeader but has no ScalarType");
}

// A read-only file with positioned reads; closes on every path out.
class InputFile {
 public:
  explicit InputFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    LOOM_CHECK_INPUT(fd_ >= 0, "cannot open safetensors file \"", path_, "\": ", describeErrno("open", errno));
    struct stat info {};
    const bool stat_ok = ::fstat(fd_, &info) == 0;
    const int err = errno;
    if (!stat_ok || !S_ISREG(info.st_mode)) {
      ::close(fd_);
      LOOM_THROW(InputError, "cannot read safetensors file \"", path_,
                 "\": ", stat_ok ? "it is not a regular file" : describeErrno("fstat", err));
    }
    size_ = static_cast<uint64_t>(info.st_size);
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }

  void readAt(uint64_t offset, void* out, uint64_t size) const {
    char* dst = static_cast<char*>(out);
    while (size > 0) {
      const ssize_t n = ::pread(fd_, dst, size, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      LOOM_CHECK_INPUT(n >= 0, "cannot read safetensors file \"", path_, "\": ", describeErrno("pread", errno));
      LOOM_CHECK_INPUT(n > 0, "safetensors file \"", path_, "\" ended at byte ", offset, " of ", size_,
                       ": it shrank while being read; do not modify it while loom reads it");
      dst += n;
      offset += static_cast<uint64_t>(n);
      size -= static_cast<uint64_t>(n);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

SafetensorsHeader readHeader(const InputFile& file) {
  std::string prefix(std::min<uint64_t>(file.size(), 8), '\0');
  file.readAt(0, prefix.data(), prefix.size());
  prefix.resize(safetensorsPrefixSize(prefix, file.size()));
  if (prefix.size() > 8) file.readAt(8, prefix.data() + 8, prefix.size() - 8);
  return parseSafetensorsHeader(prefix, file.size(), file.path());
}

at::Tensor readTensor(const InputFile& file, const SafetensorsHeader& header, const TensorEntry& entry) {
  at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(scalarTypeOf(entry.dtype)));
  if (tensor.numel() == 0) return tensor;
  file.readAt(header.data_start + entry.begin, tensor.data_ptr(), entry.end - entry.begin);
  if (tensor.scalar_type() == at::ScalarType::Bool) {
    const auto* bytes = static_cast<const unsigned char*>(tensor.data_ptr());
    const auto* bad = std::find_if(bytes, bytes + tensor.numel(), [](unsigned char b) { return b > 1; });
    LOOM_CHECK_INPUT(bad == bytes + tensor.numel(), "safetensors file \"", file.path(), "\", tensor \"", entry.name,
                     "\": BOOL element ", bad - bytes, " is byte ", static_cast<int>(*bad),
                     "; BOOL bytes must be 0 or 1. The file is corrupt: re-create it.");
  }
  return tensor;
}

std::string headerText(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header[std::string(kSafetensorsMetadataKey)] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    LOOM_CHECK_INPUT(!name.empty(), "writeSafetensors: a tensor has an empty name; give every tensor a name");
    LOOM_CHECK_INPUT(name != kSafetensorsMetadataKey, "writeSafetensors: \"", name,
                     "\" is reserved for metadata; rename the tensor");
    LOOM_CHECK_INPUT(seen.insert(name).second, "writeSafetensors: tensor name \"", name,
                     "\" appears twice; names must be unique");
    LOOM_CHECK_INPUT(tensor.defined(), "writeSafetensors: tensor \"", name, "\" is undefined");
    LOOM_CHECK_INPUT(tensor.layout() == at::kStrided, "writeSafetensors: tensor \"", name, "\" has layout ",
                     tensor.layout(), "; only dense (strided) tensors can be stored; call to_dense() first");
    const auto dtype = safetensorsName(tensor.scalar_type());
    LOOM_CHECK_INPUT(dtype.has_value(), "writeSafetensors: tensor \"", name, "\" has dtype ", tensor.scalar_type(),
                     ", which safetensors cannot hold in loom; convert it to one of ", safetensorsDtypeList());
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    header[name] = {{"dtype", *dtype}, {"shape", tensor.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::type_error& e) {
    LOOM_THROW(InputError, "writeSafetensors: a tensor name or metadata string is not valid UTF-8 (", e.what(),
               "); safetensors headers are UTF-8 JSON");
  }
  // Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// Mismatch reports list this many names or lines per kind, then a count.
constexpr size_t kMaxListed = 10;

std::string listNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxListed; ++i) out += (i == 0 ? "" : ", ") + names[i];
  if (names.size() > kMaxListed) out += c10::str(", ... (", names.size() - kMaxListed, " more)");
  return out;
}

std::string dtypeForMessage(at::ScalarType type) {
  return safetensorsName(type).value_or(c10::str(type, " (not storable in safetensors)"));
}

}  // namespace

void writeSafetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string header = headerText(tensors, metadata);
  std::array<unsigned char, 8> length{};
  for (size_t i = 0; i < length.size(); ++i) length[i] = static_cast<unsigned char>(header.size() >> (8 * i));

  AtomicFileWriter writer(path);
  writer.write(length.data(), length.size());
  writer.write(header.data(), header.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor host = tensor.detach().resolve_neg().to(at::kCPU).contiguous();
    if (host.numel() > 0) writer.write(host.data_ptr(), host.nbytes());
  }
  writer.commit();
}

NamedTensors readSafetensors(const std::string& path) {
  const InputFile file(path);
  const SafetensorsHeader header = readHeader(file);
  NamedTensors tensors;
  tensors.reserve(header.tensors.size());
  for (const auto& entry : header.tensors) tensors.emplace_back(entry.name, readTensor(file, header, entry));
  return tensors;
}

std::map<std::string, std::string> readSafetensorsMetadata(const std::string& path) {
  return readHeader(InputFile(path)).metadata;
}

void loadSafetensorsInto(const std::string& path, const NamedTensors& targets, const std::string& what) {
  const InputFile file(path);
  const SafetensorsHeader header = readHeader(file);
  std::map<std::string, const TensorEntry*> in_file;
  for (const auto& entry : header.tensors) in_file.emplace(entry.name, &entry);

  const std::string file_name = std::filesystem::path(path).filename().string();
  std::vector<std::string> missing;
  std::vector<std::string> mismatches;
  std::set<std::string> wanted;
  for (const auto& [name, target] : targets) {
    LOOM_CHECK(wanted.insert(name).second, "loadSafetensorsInto: target name \"", name, "\" appears twice");
    const auto found = in_file.find(name);
    if (found == in_file.end()) {
      missing.push_back(name);
      continue;
    }
    const TensorEntry& entry = *found->second;
    if (at::IntArrayRef(entry.shape) != target.sizes()) {
      mismatches.push_back(c10::str(name, ": shape ", at::IntArrayRef(entry.shape), " in ", file_name,
                                    " but the model expects ", target.sizes()));
    }
    if (safetensorsName(target.scalar_type()) != entry.dtype) {
      mismatches.push_back(c10::str(name, ": dtype ", entry.dtype, " in ", file_name, " but the model expects ",
                                    dtypeForMessage(target.scalar_type())));
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& entry : header.tensors) {
    if (wanted.count(entry.name) == 0) unexpected.push_back(entry.name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatches.empty()) {
    std::ostringstream message;
    message << what << ": safetensors file \"" << path << "\" does not match the model";
    if (!missing.empty()) message << "\n  missing (the model has them, the file does not): " << listNames(missing);
    if (!unexpected.empty()) {
      message << "\n  unexpected (in the file, not in the model): " << listNames(unexpected);
    }
    for (size_t i = 0; i < mismatches.size() && i < kMaxListed; ++i) message << "\n  " << mismatches[i];
    if (mismatches.size() > kMaxListed) message << "\n  ... (" << mismatches.size() - kMaxListed << " more mismatches)";
    message << "\nPass a file written for this model configuration (same model options and dtype).";
    LOOM_THROW(InputError, message.str());
  }

  const at::NoGradGuard no_grad;
  for (const auto& [name, target] : targets) target.copy_(readTensor(file, header, *in_file.at(name)));
}

}  // namespace loom::checkpoint
