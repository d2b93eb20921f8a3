// --set section.field=value: precedence over the file, order, value syntax and
// every way an override can be wrong.
#include "runtime/config/overrides.h"
#include "runtime/config/loader.h"
#include "runtime/core/error.h"

#include <gtest/gtest.h>

namespace loom::config {
namespace {

constexpr char kFile[] = "data {\n  train_path: \"t.bin\"\n}\nmodel {\n  dim: 256\n  heads: 8\n}\n";

JobOptions parse(const std::vector<std::string>& overrides, int world_size = 1) {
  return parseJobConfig(kFile, "job.pbtxt", overrides, world_size);
}

std::string overrideError(const std::vector<std::string>& overrides, int world_size = 1) {
  try {
    parse(overrides, world_size);
  } catch (const InputError& e) {
    return errorMessage(e);
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

TEST(OverridesTest, DefaultsThenFileThenOverrides) {
  const JobOptions defaults;
  const JobOptions from_file = parse({});
  EXPECT_EQ(from_file.model.dim, 256);
  EXPECT_EQ(from_file.model.layers, defaults.model.layers);
  const JobOptions overridden = parse({"model.dim=64", "model.layers=2"});
  EXPECT_EQ(overridden.model.dim, 64);
  EXPECT_EQ(overridden.model.heads, 8);
  EXPECT_EQ(overridden.model.layers, 2);
}

TEST(OverridesTest, LastOverrideOfAFieldWins) {
  EXPECT_EQ(parse({"train.steps=5", "train.steps=9"}).train.steps, 9);
  EXPECT_EQ(parse({"train.steps=9", "train.steps=5"}).train.steps, 5);
}

TEST(OverridesTest, ValuesUseTextFormatSyntax) {
  const JobOptions o =
      parse({"data.order=SEQUENTIAL", "train.resume=false", "optimizer.lr=1e-3", "train.seed=18446744073709551615",
             "logging.level=DEBUG", "model.kv_heads=0x2", "parallel.dp=-1"});
  EXPECT_EQ(o.data.order, SampleOrder::kSequential);
  EXPECT_FALSE(o.train.resume);
  EXPECT_EQ(o.optimizer.lr, 1e-3);
  EXPECT_EQ(o.train.seed, 18446744073709551615ull);
  EXPECT_EQ(o.logging.level, LogLevel::kDebug);
  EXPECT_EQ(o.model.kv_heads, 2);
  EXPECT_EQ(o.parallel.dp, -1);
}

TEST(OverridesTest, OuterSectionOverrides) {
  const JobOptions o = parse({"outer.algorithm=DILOCO", "outer.codec=FP16", "outer.sync_every=20", "outer.lr=0.5",
                              "outer.momentum=-1", "outer.nesterov=false", "outer.replicas=2", "outer.fragments=4",
                              "outer.fragment_delay=1", "outer.fragment_alpha=0.5"},
                             4);
  EXPECT_EQ(o.outer.algorithm, OuterAlgorithm::kDiLoCo);
  EXPECT_EQ(o.outer.codec, PseudoGradientCodec::kFp16);
  EXPECT_EQ(o.outer.sync_every, 20);
  EXPECT_EQ(o.outer.lr, 0.5);
  EXPECT_EQ(o.outer.momentum, -1);
  EXPECT_FALSE(o.outer.nesterov);
  EXPECT_EQ(o.outer.replicas, 2);
  EXPECT_EQ(o.outer.fragments, 4);
  EXPECT_EQ(o.outer.fragment_delay, 1);
  EXPECT_EQ(o.outer.fragment_alpha, 0.5);
  const JobOptions noloco = parse({"outer.algorithm=NOLOCO", "outer.group_size=4", "outer.consensus=0.25"}, 4);
  EXPECT_EQ(noloco.outer.algorithm, OuterAlgorithm::kNoLoCo);
  EXPECT_EQ(noloco.outer.group_size, 4);
  EXPECT_EQ(noloco.outer.consensus, 0.25);
  const JobOptions co2 =
      parse({"outer.algorithm=CO2", "outer.codec=UINT8_LUT", "outer.staleness_penalty=2", "outer.clip=0"});
  EXPECT_EQ(co2.outer.algorithm, OuterAlgorithm::kCo2);
  EXPECT_EQ(co2.outer.codec, PseudoGradientCodec::kUint8Lut);
  EXPECT_EQ(co2.outer.staleness_penalty, 2);
  EXPECT_EQ(co2.outer.clip, 0);
  EXPECT_TRUE(parse({"outer.algorithm=DILOCO", "outer.delayed=true"}).outer.delayed);
}

TEST(OverridesTest, StringsMayBeQuotedOrNot) {
  EXPECT_EQ(parse({"data.val_path=runs/a b=c.bin"}).data.val_path, "runs/a b=c.bin");
  EXPECT_EQ(parse({"data.val_path=\"quoted \\\"q\\\".bin\""}).data.val_path, "quoted \"q\".bin");
  EXPECT_EQ(parse({"data.val_path=x", "data.val_path="}).data.val_path, "");
  EXPECT_EQ(parse({"train.out_dir='o'"}).train.out_dir, "o");
}

TEST(OverridesTest, InvalidValueNamesFieldAndType) {
  EXPECT_EQ(overrideError({"model.heads=abc"}), "--set model.heads=abc: invalid value \"abc\" for model.heads (int64)");
  EXPECT_EQ(overrideError({"model.heads=4.5"}), "--set model.heads=4.5: invalid value \"4.5\" for model.heads (int64)");
  EXPECT_EQ(overrideError({"train.seed=-1"}), "--set train.seed=-1: invalid value \"-1\" for train.seed (uint64)");
  EXPECT_EQ(overrideError({"train.resume=maybe"}),
            "--set train.resume=maybe: invalid value \"maybe\" for train.resume (bool)");
  EXPECT_EQ(overrideError({"data.order=RANDOM"}),
            "--set data.order=RANDOM: invalid value \"RANDOM\" for data.order (one of SHUFFLED, SEQUENTIAL)");
  EXPECT_EQ(overrideError({"data.val_path=\"open"}),
            "--set data.val_path=\"open: invalid value \"\"open\" for data.val_path (string)");
  EXPECT_EQ(overrideError({"outer.algorithm=LOCALSGD"}),
            "--set outer.algorithm=LOCALSGD: invalid value \"LOCALSGD\" for outer.algorithm (one of NONE, DILOCO, "
            "NOLOCO, CO2)");
  EXPECT_EQ(overrideError({"outer.codec=INT4"}),
            "--set outer.codec=INT4: invalid value \"INT4\" for outer.codec (one of FP32, FP16, BF16, UINT8_MINMAX, "
            "UINT8_LUT)");
}

TEST(OverridesTest, UnknownFieldSuggestsTheClosest) {
  EXPECT_EQ(overrideError({"model.haeds=4"}),
            "--set model.haeds=4: model has no field \"haeds\" (did you mean \"heads\"? fields: vocab_size, dim, "
            "layers, heads, kv_heads, ffn_dim, norm_eps, rope_theta, init_std, max_seq_len)");
}

TEST(OverridesTest, UnknownOuterFieldSuggestsTheClosest) {
  EXPECT_EQ(overrideError({"outer.fragment=2"}),
            "--set outer.fragment=2: outer has no field \"fragment\" (did you mean \"fragments\"? fields: "
            "algorithm, sync_every, lr, momentum, nesterov, codec, replicas, fragments, fragment_delay, "
            "fragment_alpha, delayed, group_size, consensus, staleness_penalty, clip)");
}

TEST(OverridesTest, UnknownSectionSuggestsTheClosest) {
  EXPECT_EQ(overrideError({"optimiser.lr=1"}),
            "--set optimiser.lr=1: config has no section \"optimiser\" (did you mean \"optimizer\"? sections: model, "
            "data, train, parallel, optimizer, outer, elastic, context, logging)");
}

TEST(OverridesTest, MalformedOverrides) {
  EXPECT_EQ(overrideError({"model.heads"}),
            "--set model.heads: expected section.field=value (e.g. --set model.heads=8)");
  EXPECT_EQ(overrideError({"model..heads=4"}),
            "--set model..heads=4: empty name in \"model..heads\"; expected section.field=value (e.g. --set "
            "model.heads=8)");
  EXPECT_EQ(overrideError({"parallel=2"}),
            "--set parallel=2: \"parallel\" is a section, not a field; set one of its fields (dp, backend, bucket_mb, zero1, timeout_s, tp, sequence_parallel, "
            "token_split_min_tokens)");
  EXPECT_EQ(overrideError({"elastic=1"}),
            "--set elastic=1: \"elastic\" is a section, not a field; set one of its fields (policy, min_ranks, max_ranks, heartbeat_interval_s, heartbeat_timeout_s, rebuild_timeout_s, poll_interval_s, join_timeout_s)");
  EXPECT_EQ(overrideError({"model.heads.x=1"}),
            "--set model.heads.x=1: \"model.heads\" is a field (int64), not a section");
}

TEST(OverridesTest, EveryBadOverrideIsReportedTogether) {
  EXPECT_EQ(overrideError({"model.dim=8", "model=1", "train.steps=x"}),
            "--set model=1: \"model\" is a section, not a field; set one of its fields (vocab_size, dim, layers, "
            "heads, kv_heads, ffn_dim, norm_eps, rope_theta, init_std, max_seq_len)\n"
            "--set train.steps=x: invalid value \"x\" for train.steps (int64)");
}

TEST(OverridesTest, ViolationsPointAtTheOverrideThatSetTheValue) {
  EXPECT_EQ(overrideError({"model.heads=6"}), "--set model.heads=6: model.heads (6) must divide model.dim (256)");
  // The later override is the one in effect, so it is the one named.
  EXPECT_EQ(overrideError({"train.global_batch=10", "train.global_batch=6"}, 4),
            "--set train.global_batch=6: train.global_batch (6) must be divisible by the world size (4)");
  EXPECT_EQ(overrideError({"optimizer.min_lr=inf"}),
            "--set optimizer.min_lr=inf: optimizer.min_lr (inf) must be a finite number");
  EXPECT_EQ(overrideError({"outer.fragments=3", "outer.algorithm=DILOCO"}),
            "--set outer.fragments=3: outer.sync_every (50) must be a multiple of outer.fragments (3): each fragment "
            "syncs every sync_every steps, one every sync_every / fragments");
}

TEST(OverridesTest, BadOverrideLeavesTheConfigUnchanged) {
  LoomConfig config;
  FieldOrigins origins;
  const std::vector<std::string> errors = applyOverrides({"model.heads=abc", "model.nope=1"}, config, origins);
  EXPECT_EQ(errors.size(), 2u);
  EXPECT_FALSE(config.has_model());
  EXPECT_TRUE(origins.empty());
  EXPECT_TRUE(applyOverrides({"model.heads=2"}, config, origins).empty());
  EXPECT_TRUE(config.model().has_heads());
  EXPECT_FALSE(config.model().has_dim());
  EXPECT_EQ(origins, (FieldOrigins{{"model.heads", "--set model.heads=2"}}));
}

}  // namespace
}  // namespace loom::config
