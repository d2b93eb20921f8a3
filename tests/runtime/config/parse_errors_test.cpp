// Syntax, schema and value errors point at the exact place in the file:
// "<source>:<line>:<col>: <message>", 1-based, one line per error.
#include "runtime/config/loader.h"
#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <gtest/gtest.h>

namespace loom::config {
namespace {

constexpr int kWorld = 1;

// The message of the InputError that parsing `text` as "job.pbtxt" throws;
// fails the test when nothing or something else is thrown.
std::string parseError(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parseJobConfig(text, "job.pbtxt", overrides, kWorld);
  } catch (const InputError& e) {
    return errorMessage(e);
  }
  ADD_FAILURE() << "no InputError for:\n" << text;
  return "";
}

constexpr char kModelFields[] =
    "vocab_size, dim, layers, heads, kv_heads, ffn_dim, norm_eps, rope_theta, init_std, max_seq_len";

TEST(ParseErrorsTest, MissingBraceIsReportedAtTheEndOfTheFile) {
  EXPECT_EQ(parseError("model {\n  dim: 128\n"), "job.pbtxt:3:1: Expected identifier, got: end of file");
}

TEST(ParseErrorsTest, MissingColonPointsAtTheValue) {
  EXPECT_EQ(parseError("model {\n  dim 128\n}\n"), "job.pbtxt:2:7: Expected \":\", found \"128\".");
}

TEST(ParseErrorsTest, UnknownFieldPointsAtItsNameAndSuggestsTheClosest) {
  EXPECT_EQ(parseError("model {\n  dim: 128\n  haeds: 4\n}\n"),
            std::string("job.pbtxt:3:3: model has no field \"haeds\" (did you mean \"heads\"? fields: ") +
                kModelFields + ")");
}

TEST(ParseErrorsTest, UnknownFieldFarFromEveryNameGetsNoSuggestion) {
  EXPECT_EQ(parseError("data {\n  colour: 1\n}\n"),
            "job.pbtxt:2:3: data has no field \"colour\" (fields: train_path, val_path, seq_len, order)");
}

TEST(ParseErrorsTest, UnknownSectionListsTheSections) {
  EXPECT_EQ(parseError("\nmodle { dim: 8 }\n"),
            "job.pbtxt:2:1: config has no section \"modle\" (did you mean \"model\"? sections: model, data, train, "
            "parallel, optimizer, outer, elastic, context, logging)");
}

TEST(ParseErrorsTest, StringForIntegerPointsAtTheValue) {
  EXPECT_EQ(parseError("model {\n  heads: \"four\"\n}\n"), "job.pbtxt:2:10: Expected integer, got: \"four\"");
}

TEST(ParseErrorsTest, IntegerTooLargeForInt64) {
  EXPECT_EQ(parseError("train { steps: 9223372036854775808 }"),
            "job.pbtxt:1:16: Integer out of range (9223372036854775808)");
}

TEST(ParseErrorsTest, UnknownEnumValue) {
  EXPECT_EQ(parseError("data {\n  order: RANDOM\n}\n"),
            "job.pbtxt:2:10: Unknown enumeration value of \"RANDOM\" for field \"order\".");
}

TEST(ParseErrorsTest, RepeatedFieldAndSectionPointAtTheSecondName) {
  EXPECT_EQ(parseError("model {\n  dim: 64\n  dim: 32\n}\n"),
            "job.pbtxt:3:3: Non-repeated field \"dim\" is specified multiple times.");
  EXPECT_EQ(parseError("model { dim: 64 }\nmodel { heads: 2 }\n"),
            "job.pbtxt:2:1: Non-repeated field \"model\" is specified multiple times.");
}

TEST(ParseErrorsTest, AllErrorsOfOneParseAreReportedTogether) {
  EXPECT_EQ(parseError("data {\n  train_path: \"a\\qb\\zc\"\n}\n"),
            "job.pbtxt:2:18: Invalid escape sequence in string literal.\n"
            "job.pbtxt:2:21: Invalid escape sequence in string literal.");
}

TEST(ParseErrorsTest, OutOfRangeValuePointsAtTheFieldThatSetIt) {
  EXPECT_EQ(parseError("data { train_path: \"t.bin\" }\nmodel {\n  vocab_size: 100\n}\n"),
            "job.pbtxt:3:3: model.vocab_size (100) must be in [257, 65536]: tokens are stored as uint16 and the "
            "byte tokenizer needs 257");
}

TEST(ParseErrorsTest, InconsistentPairPointsAtTheFieldThatBreaksIt) {
  EXPECT_EQ(parseError("data { train_path: \"t.bin\" }\nmodel {\n  dim: 256\n  heads: 6\n}\n"),
            "job.pbtxt:4:3: model.heads (6) must divide model.dim (256)");
  // heads keeps its default (4): the file's dim is what to look at.
  EXPECT_EQ(parseError("data { train_path: \"t.bin\" }\nmodel {\n  dim: 250\n}\n"),
            "job.pbtxt:3:3: model.heads (4) must divide model.dim (250)");
}

TEST(ParseErrorsTest, ColumnsCountCharactersFromOne) {
  EXPECT_EQ(parseError("data { train_path: \"t.bin\" }   parallel {   dp: 3 }"),
            "job.pbtxt:1:45: parallel.dp (3) must equal the world size (1) or be -1");
}

TEST(ParseErrorsTest, AllViolationsAreReportedTogetherInSectionOrder) {
  const std::string text =
      "model {\n"
      "  layers: 0\n"
      "  init_std: -1\n"
      "}\n"
      "data {\n"
      "  train_path: \"\"\n"
      "}\n"
      "optimizer {\n"
      "  beta2: 1\n"
      "}\n";
  EXPECT_EQ(parseError(text),
            "job.pbtxt:2:3: model.layers (0) must be >= 1\n"
            "job.pbtxt:3:3: model.init_std (-1) must be > 0\n"
            "job.pbtxt:6:3: data.train_path is empty: set it to the training token shard (.bin)\n"
            "job.pbtxt:9:3: optimizer.beta2 (1) must be in [0, 1)");
}

TEST(ParseErrorsTest, UnspecifiedEnumValuesAreRejected) {
  EXPECT_EQ(parseError("data {\n  train_path: \"t.bin\"\n  order: ORDER_UNSPECIFIED\n}\n"
                       "logging {\n  level: 9\n}\n"),
            "job.pbtxt:3:3: data.order (ORDER_UNSPECIFIED) must be one of SHUFFLED, SEQUENTIAL\n"
            "job.pbtxt:6:3: logging.level (9) must be one of DEBUG, INFO, WARNING, ERROR");
  EXPECT_EQ(parseError("data {\n  train_path: \"t.bin\"\n}\n"
                       "outer {\n  algorithm: ALGORITHM_UNSPECIFIED\n  codec: 7\n}\n"),
            "job.pbtxt:5:3: outer.algorithm (ALGORITHM_UNSPECIFIED) must be one of NONE, DILOCO, NOLOCO, CO2\n"
            "job.pbtxt:6:3: outer.codec (7) must be one of FP32, FP16, BF16, UINT8_MINMAX, UINT8_LUT");
  EXPECT_EQ(parseError("data {\n  train_path: \"t.bin\"\n}\nouter {\n  codec: CODEC_UNSPECIFIED\n}\n"),
            "job.pbtxt:5:3: outer.codec (CODEC_UNSPECIFIED) must be one of FP32, FP16, BF16, UINT8_MINMAX, UINT8_LUT");
}

TEST(ParseErrorsTest, OuterRulesPointAtTheFieldSetInTheFile) {
  EXPECT_EQ(parseError("data {\n  train_path: \"t.bin\"\n}\n"
                       "outer {\n  algorithm: CO2\n  fragments: 2\n}\n"),
            "job.pbtxt:6:3: outer.fragments (2) is streaming DiLoCo's and needs outer.algorithm DILOCO (not CO2); "
            "set outer.fragments: 1");
  EXPECT_EQ(parseError("data {\n  train_path: \"t.bin\"\n}\nparallel {\n  zero1: true\n}\n"
                       "outer {\n  algorithm: DILOCO\n}\n"),
            "job.pbtxt:5:3: parallel.zero1 (true) with outer.replicas (1) = the world size: each rank is its own "
            "replica, so there is no data-parallel group inside a replica to shard over; set outer.replicas to fewer "
            "than the ranks, or drop parallel.zero1");
}

TEST(ParseErrorsTest, LoadNamesTheFileInEveryPosition) {
  test::TempDir dir;
  const std::string path = dir.file("job.pbtxt");
  test::writeTextFile(path, "data { train_path: \"t.bin\" }\ntrain {\n  global_batch: 10\n}\n");
  try {
    loadJobConfig(path, {}, 4);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(errorMessage(e), path + ":3:3: train.global_batch (10) must be divisible by the world size (4)");
  }
}

TEST(ParseErrorsTest, MissingFileIsAnInputErrorNamingThePath) {
  test::TempDir dir;
  const std::string path = dir.file("absent.pbtxt");
  try {
    loadJobConfig(path, {}, 1);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_NE(errorMessage(e).find(path), std::string::npos) << errorMessage(e);
  }
}

TEST(ParseErrorsTest, WorldSizeMustBePositive) {
  EXPECT_THROW(parseJobConfig("data { train_path: \"t.bin\" }", "job.pbtxt", {}, 0), InputError);
}

}  // namespace
}  // namespace loom::config
