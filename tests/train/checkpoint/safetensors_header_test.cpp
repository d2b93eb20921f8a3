#include "train/checkpoint/safetensors_header.h"

#include "runtime/core/error.h"
#include "tests/train/checkpoint/safetensors_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::checkpoint {
namespace {

using test::safetensorsBytes;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr const char* kPath = "dir/w.safetensors";

// The InputError message parsing `bytes` (as a whole file) raises, or a test failure.
std::string errorOf(const std::string& bytes) {
  try {
    parseSafetensorsHeader(bytes, bytes.size(), kPath);
  } catch (const InputError& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "no InputError for " << bytes.substr(std::min<size_t>(8, bytes.size()));
  return "";
}

std::string errorOfJson(const std::string& json, size_t data_bytes = 0) {
  return errorOf(safetensorsBytes(json, std::string(data_bytes, '\0')));
}

std::string entry(const std::string& dtype, const std::string& shape, uint64_t begin, uint64_t end) {
  return "{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(begin) + "," +
         std::to_string(end) + "]}";
}

const auto kNamesFile = HasSubstr("safetensors file \"dir/w.safetensors\"");
::testing::Matcher<std::string> namesTensor(const std::string& name) {
  return AllOf(kNamesFile, HasSubstr(", tensor \"" + name + "\""));
}

TEST(SafetensorsHeaderTest, ParsesAHandBuiltHeaderInDataOrder) {
  // "b" is listed first but stored second; the zero-size "z" sits between them
  // and "s" (0-d) last. Trailing spaces pad the header as writers do.
  const std::string json = "{\"b\":" + entry("I64", "[2]", 8, 24) +
                           ",\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"}" +
                           ",\"a\":" + entry("BF16", "[2,2]", 0, 8) + ",\"z\":" + entry("F32", "[0,3]", 8, 8) +
                           ",\"s\":" + entry("U8", "[]", 24, 25) + "}   ";
  const std::string bytes = safetensorsBytes(json, std::string(25, '\x01'));
  const SafetensorsHeader header = parseSafetensorsHeader(bytes, bytes.size(), kPath);
  ASSERT_EQ(header.tensors.size(), 4u);
  EXPECT_EQ(header.data_start, 8 + json.size());
  const std::vector<std::string> order = {header.tensors[0].name, header.tensors[1].name, header.tensors[2].name,
                                          header.tensors[3].name};
  EXPECT_EQ(order, (std::vector<std::string>{"a", "z", "b", "s"}));
  EXPECT_EQ(header.tensors[0].dtype, "BF16");
  EXPECT_EQ(header.tensors[0].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(header.tensors[1].shape, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(header.tensors[2].begin, 8u);
  EXPECT_EQ(header.tensors[2].end, 24u);
  EXPECT_TRUE(header.tensors[3].shape.empty());
  EXPECT_EQ(header.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"k", "v"}}));
}

TEST(SafetensorsHeaderTest, AcceptsAnEmptyFile) {
  const std::string bytes = safetensorsBytes("{}      ");
  const SafetensorsHeader header = parseSafetensorsHeader(bytes, bytes.size(), kPath);
  EXPECT_TRUE(header.tensors.empty());
  EXPECT_TRUE(header.metadata.empty());
  EXPECT_EQ(header.data_start, 16u);
}

TEST(SafetensorsHeaderTest, ItemSizesAndPrefixSize) {
  EXPECT_EQ(safetensorsItemSize("F64"), 8u);
  EXPECT_EQ(safetensorsItemSize("BF16"), 2u);
  EXPECT_EQ(safetensorsItemSize("BOOL"), 1u);
  EXPECT_EQ(safetensorsItemSize("F8_E4M3"), 0u);
  EXPECT_EQ(safetensorsDtypeList(), "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL");
  const std::string bytes = safetensorsBytes("{}      ");
  EXPECT_EQ(safetensorsPrefixSize(bytes, 1000), 16u);
  EXPECT_EQ(safetensorsPrefixSize(bytes, 12), 8u);  // N runs past the file
  EXPECT_EQ(safetensorsPrefixSize("abc", 3), 3u);
  EXPECT_EQ(safetensorsPrefixSize(safetensorsBytes(std::string(kMaxSafetensorsHeaderBytes + 1, ' ')).substr(0, 8),
                                  1ull << 40),
            8u);
}

TEST(SafetensorsHeaderTest, RejectsAFileShorterThanTheLengthField) {
  EXPECT_THAT(errorOf("abc"), AllOf(kNamesFile, HasSubstr("3 bytes long, shorter than the 8-byte")));
  EXPECT_THAT(errorOf(""), AllOf(kNamesFile, HasSubstr("0 bytes long")));
}

TEST(SafetensorsHeaderTest, RejectsALengthPastTheFile) {
  std::string bytes = safetensorsBytes(std::string(100, ' '));
  bytes.resize(50);
  EXPECT_THAT(errorOf(bytes),
              AllOf(kNamesFile, HasSubstr("says 100 bytes, but only 42 bytes follow it"), HasSubstr("truncated")));
}

TEST(SafetensorsHeaderTest, RejectsALengthAboveTheCapFromTheLengthFieldAlone) {
  const uint64_t n = kMaxSafetensorsHeaderBytes + 1;
  std::string first8;
  for (int i = 0; i < 8; ++i) first8.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  try {
    parseSafetensorsHeader(first8, 1ull << 30, kPath);  // only 8 bytes are available
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what_without_backtrace(),
                AllOf(kNamesFile, HasSubstr("says 104857601 bytes"), HasSubstr("104857600-byte (100 MiB) limit")));
  }
}

TEST(SafetensorsHeaderTest, ReportsTheByteOffsetOfAJsonSyntaxError) {
  // '{"a":,}': the ',' at header byte 6 (file offset 13) is not a value.
  EXPECT_THAT(errorOfJson("{\"a\":,}"), AllOf(kNamesFile, HasSubstr("syntax error at header byte 6 (file offset 13)")));
  EXPECT_THAT(errorOfJson("{\"a\":{}"), AllOf(kNamesFile, HasSubstr("syntax error")));
  EXPECT_THAT(errorOfJson(""), AllOf(kNamesFile, HasSubstr("syntax error")));
  EXPECT_THAT(errorOfJson("{} x"), AllOf(kNamesFile, HasSubstr("syntax error at header byte 4")));
  EXPECT_THAT(errorOfJson("{\"\xff\":1}"), AllOf(kNamesFile, HasSubstr("syntax error")));  // not UTF-8
}

TEST(SafetensorsHeaderTest, RejectsANonObjectHeader) {
  EXPECT_THAT(errorOfJson("[1,2]"), AllOf(kNamesFile, HasSubstr("the JSON header is [1,2]; expected an object")));
  EXPECT_THAT(errorOfJson("\"x\""), AllOf(kNamesFile, HasSubstr("expected an object")));
}

TEST(SafetensorsHeaderTest, RejectsAnEntryThatIsNotAnObject) {
  EXPECT_THAT(errorOfJson("{\"a\":5}"), AllOf(namesTensor("a"), HasSubstr("the entry is 5; expected an object")));
  EXPECT_THAT(errorOfJson("{\"a\":[[1]]}"), AllOf(namesTensor("a"), HasSubstr("a JSON array of 1 elements")));
}

TEST(SafetensorsHeaderTest, RejectsMissingAndExtraKeys) {
  EXPECT_THAT(errorOfJson("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
              AllOf(namesTensor("a"), HasSubstr("missing [\"data_offsets\"] and unexpected []")));
  EXPECT_THAT(errorOfJson("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4),
              AllOf(namesTensor("a"), HasSubstr("missing [] and unexpected [\"extra\"]"),
                    HasSubstr("expected exactly \"dtype\", \"shape\", \"data_offsets\"")));
}

TEST(SafetensorsHeaderTest, RejectsAnUnknownDtypeListingTheValidOnes) {
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F8_E4M3", "[4]", 0, 4) + "}", 4),
              AllOf(namesTensor("w"), HasSubstr("\"dtype\" \"F8_E4M3\" is not supported"),
                    HasSubstr("expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL")));
  EXPECT_THAT(errorOfJson("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,1]}}", 1),
              AllOf(namesTensor("w"), HasSubstr("\"dtype\" 4 is not supported")));
}

TEST(SafetensorsHeaderTest, RejectsShapesThatAreNotArraysOfNonNegativeIntegers) {
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "4", 0, 16) + "}", 16),
              AllOf(namesTensor("w"), HasSubstr("\"shape\" is 4; expected an array of non-negative integers")));
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[2,-1]", 0, 8) + "}", 8),
              AllOf(namesTensor("w"), HasSubstr("\"shape\" [2,-1] has dimension 1 = -1")));
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[2.5]", 0, 8) + "}", 8),
              AllOf(namesTensor("w"), HasSubstr("has dimension 0 = 2.5")));
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[\"2\"]", 0, 8) + "}", 8),
              AllOf(namesTensor("w"), HasSubstr("has dimension 0 = \"2\"")));
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[9223372036854775808]", 0, 8) + "}", 8),
              AllOf(namesTensor("w"), HasSubstr("each at most 2^63 - 1")));
  // 2^40 * 2^40 elements overflow int64 even when another dim is 0.
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[0,1099511627776,1099511627776]", 0, 0) + "}"),
              AllOf(namesTensor("w"), HasSubstr("has more than 2^63 - 1 elements")));
}

TEST(SafetensorsHeaderTest, RejectsMalformedOffsets) {
  for (const std::string offsets : {"[0]", "[0,4,8]", "[-1,3]", "[8,4]", "[0,\"4\"]", "{}", "[0,4.0]"}) {
    EXPECT_THAT(errorOfJson("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":" + offsets + "}}", 8),
                AllOf(namesTensor("w"), HasSubstr("expected two non-negative integers [begin, end] with begin <= end")))
        << offsets;
  }
}

TEST(SafetensorsHeaderTest, RejectsAnEndBeyondTheDataBuffer) {
  EXPECT_THAT(
      errorOfJson("{\"w\":" + entry("F32", "[4]", 0, 16) + "}", 12),
      AllOf(namesTensor("w"), HasSubstr("[0, 16] ends beyond the data buffer of 12 bytes"), HasSubstr("truncated")));
}

TEST(SafetensorsHeaderTest, RejectsAByteCountThatDoesNotMatchDtypeAndShape) {
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[2,3]", 0, 12) + "}", 12),
              AllOf(namesTensor("w"), HasSubstr("[0, 12] span 12 bytes, but dtype F32 with shape [2, 3] needs 6 x 4 "
                                                "= 24 bytes")));
  // 2^62 F32 elements need 2^64 bytes: the product overflows uint64.
  EXPECT_THAT(errorOfJson("{\"w\":" + entry("F32", "[4611686018427387904]", 0, 0) + "}"),
              AllOf(namesTensor("w"), HasSubstr("needs 4611686018427387904 x 4 = more than 2^64 bytes")));
}

TEST(SafetensorsHeaderTest, RejectsOverlapsAndHoles) {
  EXPECT_THAT(errorOfJson("{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"b\":" + entry("F32", "[2]", 4, 12) + "}", 12),
              AllOf(namesTensor("b"), HasSubstr("[4, 12] overlap tensor \"a\" at [0, 8]")));
  EXPECT_THAT(errorOfJson("{\"a\":" + entry("F32", "[1]", 0, 4) + ",\"b\":" + entry("F32", "[1]", 8, 12) + "}", 12),
              AllOf(namesTensor("b"), HasSubstr("leave a hole: bytes [4, 8) of the data buffer belong to no tensor")));
  EXPECT_THAT(errorOfJson("{\"a\":" + entry("F32", "[1]", 4, 8) + "}", 8),
              AllOf(namesTensor("a"), HasSubstr("bytes [0, 4)")));
  EXPECT_THAT(errorOfJson("{\"a\":" + entry("F32", "[1]", 0, 4) + "}", 8),
              AllOf(kNamesFile, HasSubstr("bytes [4, 8) at the end of the data buffer belong to no tensor")));
  EXPECT_THAT(errorOfJson("{}", 3), AllOf(kNamesFile, HasSubstr("bytes [0, 3)")));
  // A zero-size tensor inside another tensor's bytes counts as an overlap.
  EXPECT_THAT(errorOfJson("{\"a\":" + entry("F32", "[2]", 0, 8) + ",\"z\":" + entry("F32", "[0]", 4, 4) + "}", 8),
              AllOf(namesTensor("z"), HasSubstr("overlap tensor \"a\"")));
}

TEST(SafetensorsHeaderTest, RejectsMetadataThatIsNotStringToString) {
  EXPECT_THAT(errorOfJson("{\"__metadata__\":[]}"),
              AllOf(kNamesFile, HasSubstr("\"__metadata__\" is []; expected an object of string -> string")));
  EXPECT_THAT(errorOfJson("{\"__metadata__\":{\"step\":10}}"),
              AllOf(kNamesFile, HasSubstr("\"__metadata__\" key \"step\" has value 10; expected a string")));
}

TEST(SafetensorsHeaderTest, RejectsDuplicateKeys) {
  EXPECT_THAT(errorOfJson("{\"a\":" + entry("F32", "[1]", 0, 4) + ",\"a\":" + entry("F32", "[1]", 0, 4) + "}", 4),
              AllOf(namesTensor("a"), HasSubstr("the name appears twice in the JSON header")));
  EXPECT_THAT(errorOfJson("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
              AllOf(namesTensor("a"), HasSubstr("key \"dtype\" appears twice in its entry")));
  EXPECT_THAT(errorOfJson("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"),
              AllOf(kNamesFile, HasSubstr("key \"k\" appears twice in __metadata__")));
}

TEST(SafetensorsHeaderTest, RejectsAnEmptyTensorName) {
  EXPECT_THAT(errorOfJson("{\"\":" + entry("F32", "[1]", 0, 4) + "}", 4),
              AllOf(kNamesFile, HasSubstr("a tensor has an empty name")));
}

TEST(SafetensorsHeaderTest, ClipsHostileTextInMessages) {
  const std::string long_name(5000, 'n');
  const std::string message = errorOfJson("{\"" + long_name + "\":5}");
  EXPECT_THAT(message, AllOf(kNamesFile, HasSubstr("...")));
  EXPECT_LT(message.size(), 1000u);
}

}  // namespace
}  // namespace loom::checkpoint
