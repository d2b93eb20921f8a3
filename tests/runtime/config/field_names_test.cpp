#include "runtime/config/field_names.h"
#include "runtime/config/loom.pb.h"

#include <gtest/gtest.h>

namespace loom::config {
namespace {

TEST(FieldNamesTest, EditDistanceCountsEditsAndAdjacentSwaps) {
  EXPECT_EQ(editDistance("", ""), 0u);
  EXPECT_EQ(editDistance("heads", "heads"), 0u);
  EXPECT_EQ(editDistance("", "dim"), 3u);
  EXPECT_EQ(editDistance("haeds", "heads"), 1u);  // swap
  EXPECT_EQ(editDistance("head", "heads"), 1u);   // insert
  EXPECT_EQ(editDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(editDistance("ca", "abc"), 3u);  // optimal string alignment, not full Damerau (2)
}

TEST(FieldNamesTest, ClosestNameOnlyWhenClose) {
  const std::vector<std::string> names = {"lr", "min_lr", "warmup_steps", "beta1", "beta2", "eps"};
  EXPECT_EQ(closestName("warmup", names), "");  // 6 edits from warmup_steps
  EXPECT_EQ(closestName("warmup_step", names), "warmup_steps");
  EXPECT_EQ(closestName("minlr", names), "min_lr");
  EXPECT_EQ(closestName("betta1", names), "beta1");
  EXPECT_EQ(closestName("momentum", names), "");
  EXPECT_EQ(closestName("x", {}), "");
}

TEST(FieldNamesTest, SectionLabels) {
  EXPECT_EQ(sectionLabel(*LoomConfig::descriptor()), "config");
  EXPECT_EQ(sectionLabel(*ModelConfig::descriptor()), "model");
  EXPECT_EQ(sectionLabel(*LoggingConfig::descriptor()), "logging");
  EXPECT_EQ(sectionLabel(*OuterConfig::descriptor()), "outer");
}

TEST(FieldNamesTest, UnknownFieldMessages) {
  EXPECT_EQ(unknownFieldMessage(*ParallelConfig::descriptor(), "pd"),
            "parallel has no field \"pd\" (did you mean \"dp\"? fields: dp, backend, bucket_mb, zero1, timeout_s, tp, sequence_parallel, token_split_min_tokens)");
  EXPECT_EQ(unknownFieldMessage(*ElasticConfig::descriptor(), "x"), "elastic has no field \"x\" (fields: policy, min_ranks, max_ranks, heartbeat_interval_s, heartbeat_timeout_s, rebuild_timeout_s, poll_interval_s, join_timeout_s)");
  EXPECT_EQ(unknownFieldMessage(*LoomConfig::descriptor(), "trian"),
            "config has no section \"trian\" (did you mean \"train\"? sections: model, data, train, parallel, "
            "optimizer, outer, elastic, context, logging)");
  EXPECT_EQ(unknownFieldMessage(*OuterConfig::descriptor(), "sync_evry"),
            "outer has no field \"sync_evry\" (did you mean \"sync_every\"? fields: algorithm, sync_every, lr, "
            "momentum, nesterov, codec, replicas, fragments, fragment_delay, fragment_alpha, delayed, group_size, "
            "consensus, staleness_penalty, clip)");
  EXPECT_EQ(unknownFieldMessage(*LoomConfig::descriptor(), "outter"),
            "config has no section \"outter\" (did you mean \"outer\"? sections: model, data, train, parallel, "
            "optimizer, outer, elastic, context, logging)");
}

TEST(FieldNamesTest, ValidEnumNamesLeaveOutUnspecified) {
  EXPECT_EQ(validEnumNames(*DataConfig::Order_descriptor()), "SHUFFLED, SEQUENTIAL");
  EXPECT_EQ(validEnumNames(*LoggingConfig::Level_descriptor()), "DEBUG, INFO, WARNING, ERROR");
  EXPECT_EQ(validEnumNames(*OuterConfig::Algorithm_descriptor()), "NONE, DILOCO, NOLOCO, CO2");
  EXPECT_EQ(validEnumNames(*OuterConfig::Codec_descriptor()), "FP32, FP16, BF16, UINT8_MINMAX, UINT8_LUT");
}

}  // namespace
}  // namespace loom::config
