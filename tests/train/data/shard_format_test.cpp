// The pure header/index parsers against bytes built by hand, and their errors.
#include "train/data/shard_format.h"

#include "tests/train/data/data_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::data {
namespace {

using test::header;
using test::indexBytes;
using test::inputErrorOf;
using test::shardBytes;
using ::testing::AllOf;
using ::testing::HasSubstr;

const std::string kPath = "data/brown/train.bin";
const std::string kIndexPath = "data/brown/train.idx";

const uint8_t* bytesOf(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

int64_t parseWhole(const std::string& bytes) {
  return parseShardHeader(kPath, bytesOf(bytes), bytes.size(), bytes.size());
}

std::vector<int64_t> parseIndex(const std::string& bytes, int64_t token_count) {
  return parseDocumentIndex(kIndexPath, bytesOf(bytes), bytes.size(), token_count);
}

TEST(ShardFormat, ReadsAnLlmcHeaderBuiltByteByByte) {
  // int header[256] = {20240520, 1, 3}; fwrite(header); fwrite(uint16 tokens[3]).
  std::string file(1024 + 6, '\0');
  const unsigned char head[] = {0x88, 0xD8, 0x34, 0x01, 0x01, 0, 0, 0, 0x03, 0, 0, 0};  // 20240520 = 0x0134D888
  std::copy(std::begin(head), std::end(head), file.begin());
  const unsigned char body[] = {'h', 0, 'i', 0, 0x00, 0x01};  // 'h', 'i', 256
  std::copy(std::begin(body), std::end(body), file.begin() + 1024);
  EXPECT_EQ(parseWhole(file), 3);
}

TEST(ShardFormat, EncodersMatchHandBuiltBytes) {
  EXPECT_EQ(encodeShardHeader(1000), header(20240520, 1, 1000));
  EXPECT_EQ(encodeDocumentIndex({0, 4, 9}), indexBytes({0, 4, 9}));
  EXPECT_EQ(encodeShardHeader(1000).size(), kHeaderBytes);
}

TEST(ShardFormat, IndexPathSitsBesideTheShard) {
  EXPECT_EQ(indexPathFor("data/brown/train.bin"), "data/brown/train.idx");
  EXPECT_EQ(indexPathFor("val.bin"), "val.idx");
  EXPECT_EQ(indexPathFor("dir.v2/shard"), "dir.v2/shard.idx");
}

TEST(ShardFormat, RejectsEmptyAndShortFiles) {
  EXPECT_THAT(inputErrorOf([] { parseShardHeader(kPath, nullptr, 0, 0); }),
              AllOf(HasSubstr(kPath), HasSubstr("empty file (0 bytes)")));
  const std::string short_file(100, '\0');
  EXPECT_THAT(inputErrorOf([&] { parseWhole(short_file); }),
              AllOf(HasSubstr(kPath), HasSubstr("1024-byte header"), HasSubstr("has 100 bytes")));
}

TEST(ShardFormat, RejectsWrongMagicAndVersion) {
  std::string bytes = shardBytes({1, 2, 256});
  bytes.replace(0, 1024, header(20240326, 1, 3));  // llm.c's model-file magic
  EXPECT_THAT(inputErrorOf([&] { parseWhole(bytes); }),
              AllOf(HasSubstr(kPath), HasSubstr("magic) is 20240326, expected 20240520")));
  bytes.replace(0, 1024, header(20240520, 2, 3));
  EXPECT_THAT(inputErrorOf([&] { parseWhole(bytes); }),
              AllOf(HasSubstr(kPath), HasSubstr("version 2"), HasSubstr("expected 1")));
}

TEST(ShardFormat, RejectsTokenCountsThatDisagreeWithTheSize) {
  std::string bytes = header(20240520, 1, 1000) + std::string(476, '\0');  // 1500 bytes
  EXPECT_THAT(inputErrorOf([&] { parseWhole(bytes); }),
              AllOf(HasSubstr(kPath), HasSubstr("truncated: the header announces 1000 tokens (3024 bytes)"),
                    HasSubstr("the file has 1500 bytes"), HasSubstr("loom-data")));
  bytes = shardBytes({1, 2, 256}) + "xx";
  EXPECT_THAT(inputErrorOf([&] { parseWhole(bytes); }),
              AllOf(HasSubstr(kPath), HasSubstr("announces 3 tokens (1030 bytes)"), HasSubstr("has 1032 bytes")));
  for (int32_t count : {0, -5}) {
    bytes = header(20240520, 1, count);
    EXPECT_THAT(
        inputErrorOf([&] { parseWhole(bytes); }),
        AllOf(HasSubstr(kPath), HasSubstr("announces " + std::to_string(count) + " tokens"), HasSubstr("at least 1")));
  }
}

TEST(ShardFormat, ParsesAHandBuiltIndex) {
  EXPECT_EQ(parseIndex(indexBytes({0, 3, 4, 10}), 10), (std::vector<int64_t>{0, 3, 4, 10}));
  EXPECT_EQ(parseIndex(indexBytes({0, 7}), 7), (std::vector<int64_t>{0, 7}));
}

TEST(ShardFormat, RejectsCorruptIndexes) {
  EXPECT_THAT(inputErrorOf([] { parseIndex("", 10); }), AllOf(HasSubstr(kIndexPath), HasSubstr("empty file")));
  std::string bytes = indexBytes({0, 3, 10});
  bytes[0] ^= 1;
  EXPECT_THAT(inputErrorOf([&] { parseIndex(bytes, 10); }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("not a document index"), HasSubstr("expected 1480870220")));
  bytes = indexBytes({0, 3, 10});
  bytes[4] = 9;
  EXPECT_THAT(inputErrorOf([&] { parseIndex(bytes, 10); }), AllOf(HasSubstr(kIndexPath), HasSubstr("version 9")));
  bytes = indexBytes({0, 3, 10}).substr(0, 1024 + 16);
  EXPECT_THAT(inputErrorOf([&] { parseIndex(bytes, 10); }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("announces 2 documents (1048 bytes"), HasSubstr("has 1040")));
  EXPECT_THAT(inputErrorOf([] {
                parseIndex(indexBytes({1, 3, 10}), 10);
              }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("offsets[0] is 1, expected 0")));
  EXPECT_THAT(inputErrorOf([] {
                parseIndex(indexBytes({0, 5, 5, 10}), 10);
              }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("offsets[2] = 5 after offsets[1] = 5")));
  EXPECT_THAT(inputErrorOf([] {
                parseIndex(indexBytes({0, 3, 12}), 10);
              }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("is 12 but the shard holds 10 tokens")));
  EXPECT_THAT(inputErrorOf([] { parseIndex(header(0x5844494C, 1, 0), 10); }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("announces 0 documents")));
}

TEST(ShardFormat, ChecksThatDocumentsEndWithEod) {
  const std::vector<uint16_t> tokens = {5, 256, 6, 7, 256};
  checkDocumentEnds(kIndexPath, tokens.data(), {0, 2, 5});
  EXPECT_THAT(inputErrorOf([&] {
                checkDocumentEnds(kIndexPath, tokens.data(), {0, 3, 5});
              }),
              AllOf(HasSubstr(kIndexPath), HasSubstr("document 0 (tokens [0, 3)) ends with token 6")));
}

TEST(ShardFormat, DocumentsWithoutIndexAreEodRuns) {
  const std::vector<uint16_t> tokens = {5, 256, 256, 6, 7, 256, 8};
  EXPECT_EQ(documentsFromTokens(tokens.data(), 7), (std::vector<int64_t>{0, 2, 3, 6, 7}));
  EXPECT_EQ(documentsFromTokens(tokens.data(), 6), (std::vector<int64_t>{0, 2, 3, 6}));
  const std::vector<uint16_t> no_eod = {1, 2, 3};
  EXPECT_EQ(documentsFromTokens(no_eod.data(), 3), (std::vector<int64_t>{0, 3}));
}

}  // namespace
}  // namespace loom::data
