#include "train/checkpoint/safetensors.h"

#include "runtime/core/error.h"
#include "tests/support/test_util.h"
#include "tests/train/checkpoint/safetensors_test_util.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <functional>

namespace loom::checkpoint {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Names and values must come back exactly (bitwise, so NaN-free inputs).
void expectSameTensors(const NamedTensors& actual, const NamedTensors& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    SCOPED_TRACE(expected[i].first);
    EXPECT_EQ(actual[i].first, expected[i].first);
    EXPECT_EQ(actual[i].second.scalar_type(), expected[i].second.scalar_type());
    EXPECT_EQ(actual[i].second.sizes(), expected[i].second.sizes());
    EXPECT_TRUE(actual[i].second.is_contiguous());
    EXPECT_TRUE(at::equal(actual[i].second, expected[i].second));
  }
}

std::vector<std::string> filesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string inputErrorOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const InputError& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

TEST(SafetensorsTest, RoundTripsEveryDtype) {
  at::manual_seed(1);
  const NamedTensors tensors = {
      {"f64", at::randn({3, 5}, at::kDouble)},
      {"f32", at::randn({4, 2, 3})},
      {"f16", at::randn({7}).to(at::kHalf)},
      {"bf16", at::randn({2, 9}).to(at::kBFloat16)},
      {"i64", at::randint(-(1LL << 40), 1LL << 40, {6}, at::kLong)},
      {"i32", at::randint(-100000, 100000, {3, 3}, at::kInt)},
      {"i16", at::randint(-30000, 30000, {5}, at::kShort)},
      {"i8", at::randint(-128, 128, {2, 2}, at::kChar)},
      {"u8", at::randint(0, 256, {11}, at::kByte)},
      {"bool", at::randint(0, 2, {3, 4}, at::kLong).to(at::kBool)},
  };
  test::TempDir dir;
  writeSafetensors(dir.file("all.safetensors"), tensors);
  expectSameTensors(readSafetensors(dir.file("all.safetensors")), tensors);
}

TEST(SafetensorsTest, RoundTripsScalarsAndZeroSizeTensors) {
  const NamedTensors tensors = {
      {"scalar", at::scalar_tensor(3.5, at::kFloat)},    {"empty_rows", at::empty({0, 4})},
      {"mid", at::arange(6, at::kLong).reshape({2, 3})}, {"empty_cols", at::empty({3, 0}, at::kHalf)},
      {"flag", at::scalar_tensor(true, at::kBool)},
  };
  test::TempDir dir;
  writeSafetensors(dir.file("s.safetensors"), tensors);
  const NamedTensors back = readSafetensors(dir.file("s.safetensors"));
  expectSameTensors(back, tensors);
  EXPECT_EQ(back[0].second.dim(), 0);
  EXPECT_FLOAT_EQ(back[0].second.item<float>(), 3.5f);
}

TEST(SafetensorsTest, WritesNonContiguousInputsAsTheirValues) {
  const at::Tensor base = at::arange(24, at::kFloat).reshape({4, 6});
  const NamedTensors tensors = {
      {"transposed", base.t()},
      {"strided", base.slice(1, 0, 6, 2)},
      {"expanded", at::arange(3, at::kInt).unsqueeze(0).expand({4, 3})},
      {"negated_view", at::_neg_view(base)},
  };
  test::TempDir dir;
  writeSafetensors(dir.file("v.safetensors"), tensors);
  const NamedTensors back = readSafetensors(dir.file("v.safetensors"));
  ASSERT_EQ(back.size(), 4u);
  EXPECT_TRUE(at::equal(back[0].second, base.t().contiguous()));
  EXPECT_TRUE(at::equal(back[1].second, base.slice(1, 0, 6, 2).contiguous()));
  EXPECT_TRUE(at::equal(back[2].second, at::arange(3, at::kInt).repeat({4, 1})));
  EXPECT_TRUE(at::equal(back[3].second, -base));
}

TEST(SafetensorsTest, RoundTripsMetadata) {
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "120"}, {"note", "a \"q\" é"}};
  test::TempDir dir;
  writeSafetensors(dir.file("m.safetensors"), {{"w", at::ones({2})}}, metadata);
  EXPECT_EQ(readSafetensorsMetadata(dir.file("m.safetensors")), metadata);
  writeSafetensors(dir.file("none.safetensors"), {{"w", at::ones({2})}});
  EXPECT_TRUE(readSafetensorsMetadata(dir.file("none.safetensors")).empty());
}

TEST(SafetensorsTest, ReadsAHandBuiltFileInDataOrder) {
  // JSON lists "b" first, but "w" holds the first bytes of the data buffer.
  const std::string json =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
      "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
  test::TempDir dir;
  test::writeTextFile(dir.file("h.safetensors"),
                      test::safetensorsBytes(json, test::floatBytes({1.5f, -2.f, 0.25f, 8.f, 3.f, -0.5f})));
  const NamedTensors back = readSafetensors(dir.file("h.safetensors"));
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].first, "w");
  EXPECT_TRUE(at::equal(back[0].second, at::tensor({1.5f, -2.f, 0.25f, 8.f}).reshape({2, 2})));
  EXPECT_EQ(back[1].first, "b");
  EXPECT_TRUE(at::equal(back[1].second, at::tensor({3.f, -0.5f})));
  EXPECT_EQ(readSafetensorsMetadata(dir.file("h.safetensors")), (std::map<std::string, std::string>{{"format", "pt"}}));
}

TEST(SafetensorsTest, WritesAnAlignedSpacePaddedHeaderWithTheExpectedEntries) {
  test::TempDir dir;
  const NamedTensors tensors = {
      {"emb", at::zeros({3, 2}, at::kHalf)}, {"scale", at::ones({}, at::kDouble)}, {"ids", at::zeros({5}, at::kInt)}};
  writeSafetensors(dir.file("x.safetensors"), tensors, {{"format", "pt"}});
  const std::string bytes = test::readTextFile(dir.file("x.safetensors"));
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 12 + 8 + 20);
  const std::string text = bytes.substr(8, n);
  const size_t json_end = text.find_last_not_of(' ') + 1;
  EXPECT_LT(text.size() - json_end, 8u);
  EXPECT_EQ(text.substr(json_end), std::string(text.size() - json_end, ' '));
  const nlohmann::json header = nlohmann::json::parse(text.substr(0, json_end));
  const nlohmann::json expected = {
      {"__metadata__", {{"format", "pt"}}},
      {"emb", {{"dtype", "F16"}, {"shape", {3, 2}}, {"data_offsets", {0, 12}}}},
      {"scale", {{"dtype", "F64"}, {"shape", nlohmann::json::array()}, {"data_offsets", {12, 20}}}},
      {"ids", {{"dtype", "I32"}, {"shape", {5}}, {"data_offsets", {20, 40}}}},
  };
  EXPECT_EQ(header, expected) << header.dump();
}

TEST(SafetensorsTest, RejectsBadNamesAndDtypesBeforeWriting) {
  test::TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  EXPECT_THAT(inputErrorOf([&] {
                writeSafetensors(path, {{"a", at::ones({1})}, {"a", at::ones({1})}});
              }),
              HasSubstr("tensor name \"a\" appears twice"));
  EXPECT_THAT(inputErrorOf([&] { writeSafetensors(path, {{"", at::ones({1})}}); }), HasSubstr("empty name"));
  EXPECT_THAT(inputErrorOf([&] {
                writeSafetensors(path, {{"__metadata__", at::ones({1})}});
              }),
              HasSubstr("reserved for metadata"));
  EXPECT_THAT(inputErrorOf([&] {
                writeSafetensors(path, {{"c", at::ones({2}, at::kComplexFloat)}});
              }),
              AllOf(HasSubstr("tensor \"c\" has dtype ComplexFloat"), HasSubstr("F64, F32")));
  EXPECT_THAT(inputErrorOf([&] {
                writeSafetensors(path, {{"s", at::ones({2, 2}).to_sparse()}});
              }),
              HasSubstr("tensor \"s\" has layout Sparse"));
  EXPECT_THAT(inputErrorOf([&] {
                writeSafetensors(path, {{"bad\xff", at::ones({1})}});
              }),
              HasSubstr("not valid UTF-8"));
  EXPECT_TRUE(filesIn(dir.path()).empty());
}

TEST(SafetensorsTest, RejectsABoolByteOtherThanZeroOrOne) {
  test::TempDir dir;
  test::writeTextFile(dir.file("b.safetensors"),
                      test::safetensorsBytes("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}",
                                             std::string("\x01\x00\x07", 3)));
  EXPECT_THAT(inputErrorOf([&] { readSafetensors(dir.file("b.safetensors")); }),
              AllOf(HasSubstr(dir.file("b.safetensors")), HasSubstr("tensor \"m\": BOOL element 2 is byte 7")));
}

TEST(SafetensorsTest, ReadErrorsNameTheFile) {
  test::TempDir dir;
  EXPECT_THAT(inputErrorOf([&] { readSafetensors(dir.file("absent.safetensors")); }),
              AllOf(HasSubstr(dir.file("absent.safetensors")), HasSubstr("No such file")));
  EXPECT_THAT(inputErrorOf([&] { readSafetensors(dir.path()); }), HasSubstr("not a regular file"));
  test::writeTextFile(dir.file("t.safetensors"), test::safetensorsBytes("{\"w\":5}"));
  EXPECT_THAT(inputErrorOf([&] { readSafetensorsMetadata(dir.file("t.safetensors")); }),
              AllOf(HasSubstr(dir.file("t.safetensors")), HasSubstr("tensor \"w\"")));
}

TEST(SafetensorsTest, AWriteIntoAMissingDirectoryFailsCleanly) {
  test::TempDir dir;
  const std::string path = dir.file("no/such/dir/w.safetensors");
  EXPECT_THAT(inputErrorOf([&] {
                writeSafetensors(path, {{"w", at::ones({4})}});
              }),
              AllOf(HasSubstr(path), HasSubstr("No such file or directory")));
  EXPECT_TRUE(filesIn(dir.path()).empty());
}

TEST(SafetensorsTest, AWriteThatFailsMidwayKeepsTheOldFileAndLeavesNoTemporary) {
  test::TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const NamedTensors old_tensors = {{"w", at::arange(4, at::kFloat)}};
  writeSafetensors(path, old_tensors);
  const std::string old_bytes = test::readTextFile(path);
  const NamedTensors big = {{"w", at::ones({64 * 1024}, at::kFloat)}};  // 256 KiB

  // A child process whose file size limit (64 KiB) makes write() fail with
  // EFBIG after the temporary already holds data: the abandoned-write path.
  const auto write_past_the_limit = [&] {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{64 * 1024, 64 * 1024};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      writeSafetensors(path, big);
    } catch (const InputError& e) {
      const std::string message = e.what_without_backtrace();
      std::_Exit(message.find(path) != std::string::npos && message.find("write") != std::string::npos ? 0 : 2);
    }
    std::_Exit(1);
  };
  EXPECT_EXIT(write_past_the_limit(), ::testing::ExitedWithCode(0), "");
  EXPECT_EQ(test::readTextFile(path), old_bytes);
  EXPECT_EQ(filesIn(dir.path()), (std::vector<std::string>{"w.safetensors"}));
  expectSameTensors(readSafetensors(path), old_tensors);
}

TEST(SafetensorsTest, ASuccessfulWriteReplacesTheOldFile) {
  test::TempDir dir;
  const std::string path = dir.file("w.safetensors");
  writeSafetensors(path, {{"old", at::zeros({3})}});
  const NamedTensors fresh = {{"new", at::arange(5, at::kLong)}};
  writeSafetensors(path, fresh);
  expectSameTensors(readSafetensors(path), fresh);
  EXPECT_EQ(filesIn(dir.path()), (std::vector<std::string>{"w.safetensors"}));
}

}  // namespace
}  // namespace loom::checkpoint
