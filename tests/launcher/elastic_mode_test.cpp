// Elastic mode in one process: finding --config and --set on the worker command
// line, reading the policy from the effective config, and the rules that turn
// worker exits into loom-launch's exit code.
#include "launcher/elastic_mode.h"
#include "launcher/elastic_agent.h"
#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::launcher {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A config loom-train's loader accepts for small worlds (data paths are only
// opened by the trainer).
std::string configText(const std::string& elastic) {
  return "data { train_path: \"none.bin\" }\n"
         "train { global_batch: 12 micro_batch: 1 }\n" +
         elastic;
}

TEST(FindConfigArgsTest, SpaceAndEqualsFormsInOrder) {
  const ConfigArgs found =
      findConfigArgs({"--config", "a.pbtxt", "--set", "train.steps=5", "--set=elastic.policy=SHRINK", "--other", "x",
                      "--set", "elastic.min_ranks=2"});
  ASSERT_TRUE(found.config.has_value());
  EXPECT_EQ(*found.config, "a.pbtxt");
  EXPECT_THAT(found.overrides, ElementsAre("train.steps=5", "elastic.policy=SHRINK", "elastic.min_ranks=2"));
}

TEST(FindConfigArgsTest, EqualsFormAndTheLastConfigWins) {
  const ConfigArgs found = findConfigArgs({"train.py", "--config=first.pbtxt", "--config=second.pbtxt"});
  ASSERT_TRUE(found.config.has_value());
  EXPECT_EQ(*found.config, "second.pbtxt");
  EXPECT_TRUE(found.overrides.empty());
}

TEST(FindConfigArgsTest, NoConfigAMissingValueAndArgumentsAfterDoubleDash) {
  EXPECT_FALSE(findConfigArgs({}).config.has_value());
  EXPECT_FALSE(findConfigArgs({"--steps", "5"}).config.has_value());
  EXPECT_FALSE(findConfigArgs({"--config"}).config.has_value());
  const ConfigArgs found = findConfigArgs({"--set", "a.b=1", "--", "--config", "late.pbtxt", "--set", "c.d=2"});
  EXPECT_FALSE(found.config.has_value());
  EXPECT_THAT(found.overrides, ElementsAre("a.b=1"));
}

class ElasticModeOfTest : public ::testing::Test {
 protected:
  std::string writeConfig(const std::string& text) {
    const std::string path = dir_.file("job.pbtxt");
    loom::test::writeTextFile(path, text);
    return path;
  }

  loom::test::TempDir dir_;
};

TEST_F(ElasticModeOfTest, OffWithoutConfigOrWithPolicyNone) {
  EXPECT_FALSE(elasticModeOf({"--steps", "5"}, 3).has_value());
  const std::string path = writeConfig(configText(""));
  EXPECT_FALSE(elasticModeOf({"--config", path}, 3).has_value());
  EXPECT_FALSE(elasticModeOf({"--config", path, "--set", "elastic.policy=NONE"}, 3).has_value());
}

TEST_F(ElasticModeOfTest, PolicyFromTheFileAndFromOverrides) {
  const std::string path = writeConfig(configText("elastic { policy: SHRINK min_ranks: 2 }\n"));
  const auto shrink = elasticModeOf({"--config", path}, 3);
  ASSERT_TRUE(shrink.has_value());
  EXPECT_EQ(shrink->options.policy, ElasticPolicy::kShrink);
  EXPECT_EQ(shrink->options.min_ranks, 2);
  EXPECT_EQ(shrink->config_path, path);
  EXPECT_EQ(describeElasticMode(*shrink), "elastic mode: policy shrink, min_ranks 2 (from --config " + path + ")");

  const auto replace =
      elasticModeOf({"--config=" + path, "--set=elastic.policy=REPLACE", "--set", "elastic.min_ranks=1"}, 3);
  ASSERT_TRUE(replace.has_value());
  EXPECT_EQ(replace->options.policy, ElasticPolicy::kReplace);
  EXPECT_EQ(replace->options.min_ranks, 1);

  const std::string plain = writeConfig(configText(""));
  const auto from_set = elasticModeOf({"--config", plain, "--set", "elastic.policy=SHRINK"}, 3);
  ASSERT_TRUE(from_set.has_value());
  EXPECT_EQ(from_set->options.policy, ElasticPolicy::kShrink);
}

TEST_F(ElasticModeOfTest, BadConfigIsInputErrorWithTheLoadersMessage) {
  const std::string path = writeConfig(configText("elastic { policy: SHRINK min_ranks: 5 }\n"));
  try {
    elasticModeOf({"--config", path}, 3);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(errorMessage(e), HasSubstr("elastic.min_ranks (5) exceeds the starting world size (3)"));
  }
  EXPECT_THROW(elasticModeOf({"--config", dir_.file("missing.pbtxt")}, 3), InputError);
}

ExitStatus exited(int code) {
  ExitStatus status;
  status.code = code;
  return status;
}

ExitStatus killed(int signal) {
  ExitStatus status;
  status.signaled = true;
  status.signal = signal;
  return status;
}

TEST(ElasticExitTest, DeathsAreLossesAndDeliberateStopsAreNot) {
  EXPECT_TRUE(isLoss(killed(9), false));
  EXPECT_TRUE(isLoss(exited(1), false));
  EXPECT_TRUE(isLoss(exited(9), false));
  EXPECT_FALSE(isLoss(exited(0), false));
  EXPECT_FALSE(isLoss(exited(2), false));  // bad input: every worker would fail the same way
  EXPECT_FALSE(isLoss(exited(3), false));  // peer lost: survivors stopping below min_ranks
  EXPECT_TRUE(isLoss(exited(3), true));    // its peers had declared it dead first
}

TEST(ElasticExitTest, SurvivorsDecideTheExitCode) {
  EXPECT_EQ(survivorsExitCode({}), std::nullopt);
  EXPECT_EQ(survivorsExitCode({exited(0), exited(0)}), 0);
  EXPECT_EQ(survivorsExitCode({exited(0), exited(3), exited(2)}), 3);
  EXPECT_EQ(survivorsExitCode({killed(15), exited(3)}), 128 + 15);
}

}  // namespace
}  // namespace loom::launcher
