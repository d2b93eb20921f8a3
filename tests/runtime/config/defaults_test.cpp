// Defaults come from options.h alone; the effective config lists every field
// and parses back to the same options; every shipped config is valid.
#include "runtime/config/convert.h"
#include "runtime/config/loader.h"
#include "runtime/core/error.h"
#include "tests/runtime/config/options_equal.h"
#include "tests/support/test_util.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

namespace loom::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

TEST(DefaultsTest, EmptyConfigIsTheDefaultJob) {
  std::vector<Violation> violations;
  test::expectSameOptions(JobOptions{}, fromProto(LoomConfig{}, violations));
  EXPECT_TRUE(violations.empty());

  // Through the public entry point: only the required path has to be given.
  JobOptions expected;
  expected.data.train_path = "t.bin";
  test::expectSameOptions(expected, parseJobConfig("", "empty.pbtxt", {"data.train_path=t.bin"}, 1));
  test::expectSameOptions(expected,
                          parseJobConfig("# only a comment\nmodel {}\n", "c.pbtxt", {"data.train_path=t.bin"}, 1));
}

TEST(DefaultsTest, EmptyConfigNeedsOnlyTheTrainPath) {
  try {
    parseJobConfig("", "empty.pbtxt", {}, 1);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(errorMessage(e), "data.train_path is empty: set it to the training token shard (.bin)");
  }
}

// Fails for every field of `message` (recursively) that is not present.
void expectEveryFieldPresent(const Message& message, const std::string& path) {
  const Descriptor& type = *message.GetDescriptor();
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor* field = type.field(i);
    const std::string name = path.empty() ? field->name() : path + "." + field->name();
    ASSERT_TRUE(message.GetReflection()->HasField(message, field)) << name << " missing";
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      expectEveryFieldPresent(message.GetReflection()->GetMessage(message, field), name);
    }
  }
}

TEST(DefaultsTest, EffectiveConfigListsEveryField) {
  for (const JobOptions& options : {JobOptions{}, test::nonDefaultOptions(), test::nonDefaultDelayedOptions()}) {
    LoomConfig parsed;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(effectiveConfigText(options), &parsed));
    expectEveryFieldPresent(parsed, "");
  }
}

TEST(DefaultsTest, EffectiveConfigRoundTripsExactly) {
  for (const JobOptions& options : {test::nonDefaultOptions(), test::nonDefaultDelayedOptions()}) {
    const std::string text = effectiveConfigText(options);
    test::expectSameOptions(options, parseJobConfig(text, "effective.pbtxt", {}, 2));
  }

  JobOptions defaults;
  defaults.data.train_path = "t.bin";
  test::expectSameOptions(defaults, parseJobConfig(effectiveConfigText(defaults), "effective.pbtxt", {}, 1));
}

TEST(DefaultsTest, EffectiveConfigOfTheDefaultsSpellsThemOut) {
  const std::string text = effectiveConfigText(JobOptions{});
  for (const char* line : {"  vocab_size: 257\n", "  norm_eps: 1e-05\n", "  order: SHUFFLED\n", "  seed: 1234\n",
                           "  out_dir: \"runs/tiny\"\n", "  resume: true\n", "  dp: -1\n", "  lr: 0.003\n",
                           "  level: INFO\n", "elastic {\n  policy: NONE\n  min_ranks: 1\n", "outer {\n  algorithm: NONE\n", "  sync_every: 50\n",
                           "  momentum: -1\n", "  codec: FP32\n", "  consensus: -1\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing " << line << "in\n" << text;
  }
}

// Every enum value of the outer section survives toProto and fromProto.
TEST(DefaultsTest, EveryOuterAlgorithmAndCodecConverts) {
  for (OuterAlgorithm algorithm :
       {OuterAlgorithm::kNone, OuterAlgorithm::kDiLoCo, OuterAlgorithm::kNoLoCo, OuterAlgorithm::kCo2}) {
    for (PseudoGradientCodec codec :
         {PseudoGradientCodec::kFp32, PseudoGradientCodec::kFp16, PseudoGradientCodec::kBf16,
          PseudoGradientCodec::kUint8MinMax, PseudoGradientCodec::kUint8Lut}) {
      JobOptions options;
      options.outer.algorithm = algorithm;
      options.outer.codec = codec;
      std::vector<Violation> violations;
      test::expectSameOptions(options, fromProto(toProto(options), violations));
      EXPECT_TRUE(violations.empty());
    }
  }
}

TEST(DefaultsTest, EveryContextModeConverts) {
  for (ContextMode mode : {ContextMode::kNone, ContextMode::kStatic, ContextMode::kHdp}) {
    JobOptions options;
    options.context.mode = mode;
    std::vector<Violation> violations;
    test::expectSameOptions(options, fromProto(toProto(options), violations));
    EXPECT_TRUE(violations.empty());
  }
}

TEST(DefaultsTest, OuterSentinelsResolvePerAlgorithm) {
  OuterOptions outer;
  outer.algorithm = OuterAlgorithm::kDiLoCo;
  EXPECT_EQ(outer.effectiveLr(), 0.7);
  EXPECT_EQ(outer.effectiveMomentum(), 0.9);
  outer.algorithm = OuterAlgorithm::kNoLoCo;
  EXPECT_EQ(outer.effectiveLr(), 0.7);
  EXPECT_EQ(outer.effectiveMomentum(), 0.5);
  EXPECT_EQ(outer.effectiveConsensus(), 0.7);
  outer.algorithm = OuterAlgorithm::kCo2;
  EXPECT_EQ(outer.effectiveLr(), 1.0);
  EXPECT_EQ(outer.effectiveMomentum(), 0.0);
  outer.lr = 0.3;
  outer.momentum = 0;
  EXPECT_EQ(outer.effectiveLr(), 0.3);
  EXPECT_EQ(outer.effectiveMomentum(), 0);
  EXPECT_EQ(outer.effectiveConsensus(), 0.3);
  outer.consensus = 0;
  EXPECT_EQ(outer.effectiveConsensus(), 0);
}

TEST(DefaultsTest, TinyConfigLoadsForOneAndTwoRanks) {
  for (int world : {1, 2}) {
    const JobOptions o = loadJobConfig(test::sourcePath("configs/tiny.pbtxt"), {}, world);
    // What configs/tiny.pbtxt sets, spelled out; the rest are defaults.
    JobOptions expected;
    expected.model.vocab_size = 257;
    expected.model.dim = 128;
    expected.model.layers = 4;
    expected.model.heads = 4;
    expected.model.kv_heads = 2;
    expected.model.ffn_dim = 384;
    expected.model.max_seq_len = 1024;
    expected.data.train_path = "data/brown/train.bin";
    expected.data.val_path = "data/brown/val.bin";
    expected.data.seq_len = 128;
    expected.data.order = SampleOrder::kShuffled;
    expected.train.steps = 300;
    expected.train.global_batch = 16;
    expected.train.micro_batch = 16;
    expected.train.seed = 1234;
    expected.train.out_dir = "runs/tiny";
    expected.train.checkpoint_every = 100;
    expected.train.val_every = 50;
    expected.train.val_batches = 8;
    expected.train.grad_clip = 1.0;
    expected.optimizer.lr = 3e-3;
    expected.optimizer.min_lr = 3e-4;
    expected.optimizer.warmup_steps = 30;
    expected.optimizer.weight_decay = 0.1;
    expected.logging.log_every = 10;
    test::expectSameOptions(expected, o);
  }
}

// The tiny job with an outer section: configs/<name>.pbtxt.
JobOptions expectedOuterConfig(const std::string& name) {
  JobOptions expected = loadJobConfig(test::sourcePath("configs/tiny.pbtxt"), {}, 1);
  expected.train.out_dir = "runs/" + name;
  expected.outer.sync_every = 50;
  if (name == "diloco") {
    expected.outer.algorithm = OuterAlgorithm::kDiLoCo;
    expected.outer.codec = PseudoGradientCodec::kFp16;
  } else if (name == "noloco") {
    expected.outer.algorithm = OuterAlgorithm::kNoLoCo;
    expected.outer.group_size = 2;
  } else {
    expected.outer.algorithm = OuterAlgorithm::kCo2;
    expected.outer.clip = 1.0;
  }
  return expected;
}

TEST(DefaultsTest, OuterConfigsAreTheTinyJobWithAnOuterSection) {
  for (const char* name : {"diloco", "noloco", "co2"}) {
    for (int world : {2, 4}) {  // NoLoCo needs pairs of replicas
      SCOPED_TRACE(std::string(name) + ", world " + std::to_string(world));
      test::expectSameOptions(expectedOuterConfig(name),
                              loadJobConfig(test::sourcePath(std::string("configs/") + name + ".pbtxt"), {}, world));
    }
  }
}

TEST(DefaultsTest, ElasticConfigIsTheTinyJobWithZero1AndAnElasticSection) {
  JobOptions expected = loadJobConfig(test::sourcePath("configs/tiny.pbtxt"), {}, 4);
  expected.train.out_dir = "runs/elastic";
  expected.parallel.zero1 = true;
  expected.elastic.policy = ElasticPolicy::kReplace;
  expected.elastic.min_ranks = 2;
  expected.elastic.heartbeat_timeout_s = 5;
  test::expectSameOptions(expected, loadJobConfig(test::sourcePath("configs/elastic.pbtxt"), {}, 4));
}

TEST(DefaultsTest, TpConfigIsTheTinyJobInTensorParallelPairs) {
  for (int world : {2, 4}) {
    JobOptions expected = loadJobConfig(test::sourcePath("configs/tiny.pbtxt"), {}, world);
    expected.train.out_dir = "runs/tp";
    expected.parallel.tp = 2;
    test::expectSameOptions(expected, loadJobConfig(test::sourcePath("configs/tp.pbtxt"), {}, world));
  }
}

TEST(DefaultsTest, HdpConfigIsTheTinyJobOnDocuments) {
  JobOptions expected = loadJobConfig(test::sourcePath("configs/tiny.pbtxt"), {}, 4);
  expected.train.out_dir = "runs/hdp";
  expected.model.max_seq_len = 4096;
  expected.context.mode = ContextMode::kHdp;
  expected.context.capacity = 2048;
  expected.context.tokens_per_step = 8192;
  expected.context.median_tokens = 256;
  expected.context.sigma = 1.5;
  expected.context.max_tokens = 4096;
  test::expectSameOptions(expected, loadJobConfig(test::sourcePath("configs/hdp.pbtxt"), {}, 4));
}

// Every shipped config passes validation and writes to its own directory.
TEST(DefaultsTest, EveryShippedConfigLoads) {
  std::set<std::string> out_dirs;
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::sourcePath("configs"))) {
    if (entry.path().extension() != ".pbtxt") continue;
    ++count;
    for (int world : {2, 4}) {  // configs/noloco.pbtxt pairs replicas: it needs an even world
      JobOptions options;
      try {
        options = loadJobConfig(entry.path().string(), {}, world);
      } catch (const InputError& e) {
        ADD_FAILURE() << entry.path() << ", world " << world << ":\n" << errorMessage(e);
        continue;
      }
      if (world == 2) {
        EXPECT_TRUE(out_dirs.insert(options.train.out_dir).second)
            << entry.path() << " reuses " << options.train.out_dir;
      }
    }
  }
  EXPECT_GE(count, 4u);
}

}  // namespace
}  // namespace loom::config
