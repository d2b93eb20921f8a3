// The fixture of the elastic chaos tests (elastic_chaos_test.cpp,
// elastic_outer_chaos_test.cpp): one small job config, loom-launch runs of it
// with faults injected, cached failure-free references, and the checks that a
// run committed every step once with its whole global batch.
#pragma once

#include "runtime/config/loader.h"
#include "tests/support/test_util.h"
#include "tests/train/trainer/trainer_test_util.h"
#include "train/checkpoint/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace loom::train {

using loom::test::CommandResult;
using loom::test::shellQuote;

constexpr int64_t kGlobalBatch = 12;
constexpr double kTolerance = 1e-6;

inline std::map<std::string, at::Tensor> weightsOf(const std::string& path) {
  const checkpoint::NamedTensors list = checkpoint::readSafetensors(path);
  return {list.begin(), list.end()};
}

inline double relativeDistance(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b,
                        bool* bitwise) {
  double diff = 0;
  double norm = 0;
  *bitwise = true;
  for (const auto& [name, t] : a) {
    const at::Tensor& other = b.at(name);
    diff += (t.to(at::kDouble) - other.to(at::kDouble)).pow(2).sum().item<double>();
    norm += t.to(at::kDouble).pow(2).sum().item<double>();
    *bitwise = *bitwise && at::equal(t, other);
  }
  return std::sqrt(diff / norm);
}

struct Metrics {
  std::vector<nlohmann::json> steps;   // lines with a loss, in file order
  std::vector<nlohmann::json> events;  // recovery / admission lines
};

inline Metrics metricsOf(const std::string& out) {
  Metrics m;
  std::istringstream lines(loom::test::readTextFile(out + "/metrics.jsonl"));
  std::string line;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("event")) m.events.push_back(j);
    if (j.contains("loss")) m.steps.push_back(j);
  }
  return m;
}

class ElasticChaosTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new loom::test::TempDir();
    test::writeCorpus(dir_->file("train.bin"), 40, 0);
    JobOptions job = test::smallJob(dir_->path());
    job.data.val_path.clear();
    job.train.steps = 14;
    job.train.global_batch = kGlobalBatch;  // 3 samples per rank on 4 ranks, 4 on 3, 6 on 2, 2 on 6
    job.train.micro_batch = 3;              // after a loss, shares of 4 run as micro-batches of 3 + 1
    job.train.checkpoint_every = 5;
    job.parallel.timeout_s = 60;
    job.elastic.policy = ElasticPolicy::kShrink;
    job.elastic.min_ranks = 2;
    job.elastic.heartbeat_interval_s = 0.1;
    job.elastic.heartbeat_timeout_s = 3;  // generous: CTest runs other tests alongside
    job.elastic.rebuild_timeout_s = 20;
    config_ = new std::string(dir_->file("job.pbtxt"));
    loom::test::writeTextFile(*config_, config::effectiveConfigText(job));
  }
  static void TearDownTestSuite() {
    delete config_;
    delete dir_;
  }

  /// loom-launch with 4 workers; `env` is prefixed to the command (e.g. LOOM_FAULT_INJECT=...).
  static CommandResult run(const std::string& out, const std::string& sets, const std::string& env = "",
                           const std::string& launch_flags = "--nproc-per-node 4", const std::string& wrapper = "") {
    return loom::test::runCommand(env + " " + shellQuote(loom::test::loomBinary("loom-launch")) +
                                  " --grace-period 5 " + launch_flags + " -- " + wrapper + " " +
                                  shellQuote(loom::test::loomBinary("loom-train")) + " --config " +
                                  shellQuote(*config_) + " --set 'train.out_dir=\"" + out + "\"' " + sets);
  }

  /// The failure-free run's final weights for `sets`, computed once per distinct `sets`.
  static const std::map<std::string, at::Tensor>& reference(const std::string& sets) {
    static std::map<std::string, std::map<std::string, at::Tensor>> cache;
    auto it = cache.find(sets);
    if (it == cache.end()) {
      const std::string out = dir_->file("reference_" + std::to_string(cache.size()));
      const CommandResult result = run(out, sets);
      EXPECT_EQ(result.exit_code, 0) << result.output;
      it = cache.emplace(sets, weightsOf(out + "/model.safetensors")).first;
    }
    return it->second;
  }

  /// Every step 1..steps committed exactly once with its whole global batch,
  /// and the weights equal the failure-free run's.
  static void expectExactRun(const std::string& out, const std::string& sets, int64_t steps, const std::string& label) {
    const Metrics m = metricsOf(out);
    ASSERT_EQ(static_cast<int64_t>(m.steps.size()), steps) << label;
    for (int64_t i = 0; i < steps; ++i) {
      const nlohmann::json& j = m.steps[static_cast<size_t>(i)];
      const int64_t step = i + 1;
      EXPECT_EQ(j["step"].get<int64_t>(), step) << label;
      EXPECT_EQ(j["samples"].get<int64_t>(), kGlobalBatch) << label << " step " << step;
      // Global samples (step-1)*B .. step*B-1, each once.
      const double first = static_cast<double>((step - 1) * kGlobalBatch);
      EXPECT_EQ(j["sample_sum"].get<double>(), kGlobalBatch * first + kGlobalBatch * (kGlobalBatch - 1) / 2.0)
          << label << " step " << step;
      EXPECT_EQ(j["tokens"].get<int64_t>(), step * kGlobalBatch * 16) << label;
    }
    bool bitwise = false;
    const double distance = relativeDistance(weightsOf(out + "/model.safetensors"), reference(sets), &bitwise);
    EXPECT_LE(distance, kTolerance) << label;
    std::cout << "[ elastic  ] " << label << ": final weights vs failure-free run: relative L2 " << distance
              << (bitwise ? " (bit-identical)" : " (not bit-identical)") << "\n";
  }

  static inline loom::test::TempDir* dir_ = nullptr;
  static inline std::string* config_ = nullptr;
};


}  // namespace loom::train
