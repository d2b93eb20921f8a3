#include "train/checkpoint/checkpoint.h"

#include "runtime/core/error.h"
#include "runtime/core/file_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>

namespace loom::checkpoint {
namespace {

namespace fs = std::filesystem;

constexpr int kFormatVersion = 1;
constexpr const char* kPrefix = "step_";
constexpr const char* kStagingSuffix = ".staging";

std::string stepDirName(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "%s%08lld", kPrefix, static_cast<long long>(step));
  return name;
}

// Parses "step_<digits>" (nothing else: temporaries end in ".tmp-<pid>").
std::optional<int64_t> parseStepDirName(const std::string& name) {
  const std::string prefix = kPrefix;
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  return std::stoll(digits);
}

std::string toHex(const at::Tensor& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const at::Tensor flat = bytes.contiguous();
  const uint8_t* data = flat.data_ptr<uint8_t>();
  std::string hex;
  hex.reserve(2 * flat.numel());
  for (int64_t i = 0; i < flat.numel(); ++i) {
    hex.push_back(kDigits[data[i] >> 4]);
    hex.push_back(kDigits[data[i] & 0xF]);
  }
  return hex;
}

at::Tensor fromHex(const std::string& hex, const std::string& path) {
  LOOM_CHECK_INPUT(hex.size() % 2 == 0, path, ": rng_state has an odd number of hex digits");
  at::Tensor bytes = at::empty({static_cast<int64_t>(hex.size() / 2)}, at::kByte);
  uint8_t* data = bytes.data_ptr<uint8_t>();
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    LOOM_THROW(InputError, path, ": rng_state holds a non-hex character '", c, "'");
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    data[i / 2] = static_cast<uint8_t>(nibble(hex[i]) << 4 | nibble(hex[i + 1]));
  }
  return bytes;
}

// "step_<N>.staging" with N <= step: left over by this save or an earlier crashed one.
bool isStagingOfStepAtMost(const std::string& name, int64_t step) {
  const std::string suffix = kStagingSuffix;
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  const auto staged_step = parseStepDirName(name.substr(0, name.size() - suffix.size()));
  return staged_step && *staged_step <= step;
}

}  // namespace

std::string checkpointFile(const std::string& checkpoint_dir, const std::string& name) {
  return (fs::path(checkpoint_dir) / name).string();
}

CheckpointStore::CheckpointStore(std::string dir, int64_t keep) : dir_(std::move(dir)), keep_(keep) {
  LOOM_CHECK(keep_ >= 1, "CheckpointStore: keep must be >= 1, got ", keep_);
}

std::vector<std::pair<int64_t, std::string>> CheckpointStore::completeCheckpoints() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return found;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (!entry.is_directory()) continue;
    if (auto step = parseStepDirName(entry.path().filename().string())) {
      found.emplace_back(*step, entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::string CheckpointStore::stagedFile(int64_t step, const std::string& name) const {
  const fs::path staging = fs::path(dir_) / (stepDirName(step) + kStagingSuffix);
  ensureWritableDir(staging.string(), "checkpoint staging directory");
  return (staging / name).string();
}

std::optional<std::string> CheckpointStore::latest() const {
  const auto found = completeCheckpoints();
  if (found.empty()) return std::nullopt;
  return found.back().second;
}

std::string CheckpointStore::save(const NamedTensors& model, const NamedTensors& optimizer, const TrainerState& state,
                                  const std::string& config_text) const {
  ensureWritableDir(dir_, "checkpoint directory");
  const std::string final_dir = (fs::path(dir_) / stepDirName(state.step)).string();
  const std::string tmp_dir = final_dir + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp_dir);
  fs::create_directories(tmp_dir);

  writeSafetensors(checkpointFile(tmp_dir, "model.safetensors"), model, {{"format", "pt"}});
  writeSafetensors(checkpointFile(tmp_dir, "optimizer.safetensors"), optimizer, {{"format", "pt"}});
  nlohmann::ordered_json j;
  j["format_version"] = kFormatVersion;
  j["step"] = state.step;
  j["data_cursor"] = state.data_cursor;
  j["tokens"] = state.tokens;
  j["seed"] = state.seed;
  j["world_size"] = state.world_size;
  j["rng_state"] = toHex(state.rng_state);
  writeFileAtomically(checkpointFile(tmp_dir, "trainer.json"), j.dump(2) + "\n");
  writeFileAtomically(checkpointFile(tmp_dir, "config.pbtxt"), config_text);
  // Files other ranks staged for this step join the checkpoint before it becomes visible.
  const fs::path staging = fs::path(dir_) / (stepDirName(state.step) + kStagingSuffix);
  std::error_code staging_ec;
  if (fs::is_directory(staging, staging_ec)) {
    for (const auto& entry : fs::directory_iterator(staging)) {
      if (entry.path().filename().string().find(".tmp") != std::string::npos) continue;  // a writer's temporary
      fs::rename(entry.path(), fs::path(tmp_dir) / entry.path().filename());
    }
  }
  syncDirectory(tmp_dir);

  fs::remove_all(final_dir);  // a re-save of the same step (e.g. after a resume) replaces it
  fs::rename(tmp_dir, final_dir);
  syncDirectory(dir_);

  // Prune: keep the newest `keep_`, drop temporaries of crashed writers.
  const auto found = completeCheckpoints();
  for (size_t i = 0; i + static_cast<size_t>(keep_) < found.size(); ++i) {
    fs::remove_all(found[i].second);
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp-") != std::string::npos || isStagingOfStepAtMost(name, state.step)) {
      fs::remove_all(entry.path(), ec);
    }
  }
  return final_dir;
}

TrainerState readTrainerState(const std::string& checkpoint_dir) {
  const std::string path = checkpointFile(checkpoint_dir, "trainer.json");
  const std::string text = readFile(path, "checkpoint trainer state");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  LOOM_CHECK_INPUT(j.is_object(), path, ": not a JSON object; the checkpoint is damaged, resume from an older one");
  try {
    const int version = j.at("format_version").get<int>();
    LOOM_CHECK_INPUT(version == kFormatVersion, path, ": format_version ", version, " but this loom reads ",
                     kFormatVersion);
    TrainerState state;
    state.step = j.at("step").get<int64_t>();
    state.data_cursor = j.at("data_cursor").get<int64_t>();
    state.tokens = j.at("tokens").get<int64_t>();
    state.seed = j.at("seed").get<uint64_t>();
    state.world_size = j.at("world_size").get<int>();
    state.rng_state = fromHex(j.at("rng_state").get<std::string>(), path);
    return state;
  } catch (const nlohmann::json::exception& e) {
    LOOM_THROW(InputError, path, ": ", e.what(), "; the checkpoint is damaged, resume from an older one");
  }
}

}  // namespace loom::checkpoint
