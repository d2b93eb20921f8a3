// Shards on disk: the writer's bytes, mapping and validation, and every bad
// file a user can hand the loader (each error must name the file).
#include "train/data/token_shard.h"

#include "tests/support/test_util.h"
#include "tests/train/data/data_test_util.h"
#include "train/data/shard_format.h"
#include "train/data/shard_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace loom::data {
namespace {

using loom::test::readTextFile;
using loom::test::TempDir;
using loom::test::writeTextFile;
using test::header;
using test::indexBytes;
using test::inputErrorOf;
using test::shardBytes;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::vector<uint16_t> tokensOf(const TokenShard& shard) {
  return std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size());
}

TEST(TokenShard, WriterOutputMatchesHandBuiltBytesAndReadsBack) {
  TempDir dir;
  const std::string path = dir.file("train.bin");
  {
    ShardWriter writer(path);
    writer.addDocument({'a', 'b'}, "doc0");
    writer.addDocument({}, "doc1");
    writer.addDocument({65535, 0, 300}, "doc2");
    EXPECT_EQ(writer.documents(), 3);
    EXPECT_EQ(writer.tokens(), 8);
    writer.finish();
  }
  const std::vector<uint16_t> expected = {'a', 'b', 256, 256, 65535, 0, 300, 256};
  EXPECT_EQ(readTextFile(path), shardBytes(expected));
  EXPECT_EQ(readTextFile(dir.file("train.idx")), indexBytes({0, 3, 4, 8}));

  const TokenShard shard(path, 65536);
  EXPECT_EQ(shard.path(), path);
  EXPECT_EQ(shard.size(), 8);
  EXPECT_EQ(tokensOf(shard), expected);
  EXPECT_TRUE(shard.hasIndex());
  EXPECT_EQ(shard.documents(), (std::vector<int64_t>{0, 3, 4, 8}));
  EXPECT_EQ(shard.documentCount(), 3);
  // Only the shard and its index remain: no temporaries.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 2);
}

TEST(TokenShard, ReadsAShardWithoutIndexAsEodRuns) {
  TempDir dir;
  const std::string path = dir.file("llmc.bin");
  writeTextFile(path, shardBytes({7, 256, 8, 9, 256, 10}));
  const TokenShard shard(path, 257);
  EXPECT_FALSE(shard.hasIndex());
  EXPECT_EQ(shard.documents(), (std::vector<int64_t>{0, 2, 5, 6}));
}

TEST(TokenShard, AbandonedWriterLeavesTheOldShardAndNoTemporaries) {
  TempDir dir;
  const std::string path = dir.file("train.bin");
  writeTextFile(path, shardBytes({1, 256}));
  writeTextFile(dir.file("train.idx"), indexBytes({0, 2}));
  {
    ShardWriter writer(path);
    writer.addDocument({9, 9, 9}, "new");
  }
  EXPECT_EQ(readTextFile(path), shardBytes({1, 256}));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 2);

  ShardWriter writer(path);
  writer.addDocument({9, 9, 9}, "new");
  writer.finish();
  EXPECT_EQ(readTextFile(path), shardBytes({9, 9, 9, 256}));
  EXPECT_EQ(readTextFile(dir.file("train.idx")), indexBytes({0, 4}));
}

TEST(TokenShard, WriterRefusesAnEmptyShard) {
  TempDir dir;
  ShardWriter writer(dir.file("empty.bin"));
  EXPECT_THAT(inputErrorOf([&] { writer.finish(); }),
              AllOf(HasSubstr(dir.file("empty.bin")), HasSubstr("no documents")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("empty.bin")));
}

TEST(TokenShard, WriterNamesAnUnwritableDirectory) {
  const std::string path = "/nonexistent-loom-dir/train.bin";
  EXPECT_THAT(inputErrorOf([&] { ShardWriter writer(path); }), HasSubstr(path));
}

class TokenShardErrors : public ::testing::Test {
 protected:
  // Writes `bytes` to a fresh shard file and returns the error of opening it.
  std::string errorFor(const std::string& bytes, int64_t vocab_size = 257) {
    writeTextFile(path_, bytes);
    return inputErrorOf([&] { TokenShard shard(path_, vocab_size); });
  }

  TempDir dir_;
  const std::string path_ = dir_.file("bad.bin");
};

TEST_F(TokenShardErrors, MissingFile) {
  EXPECT_THAT(inputErrorOf([&] { TokenShard shard(path_, 257); }), AllOf(HasSubstr(path_), HasSubstr("No such file")));
}

TEST_F(TokenShardErrors, EmptyFile) {
  EXPECT_THAT(errorFor(""), AllOf(HasSubstr(path_), HasSubstr("empty file")));
}

TEST_F(TokenShardErrors, TruncatedFile) {
  const std::string bytes = shardBytes({1, 2, 3, 4, 256});
  EXPECT_THAT(errorFor(bytes.substr(0, 600)), AllOf(HasSubstr(path_), HasSubstr("has 600 bytes")));
  EXPECT_THAT(errorFor(bytes.substr(0, bytes.size() - 3)),
              AllOf(HasSubstr(path_), HasSubstr("truncated: the header announces 5 tokens (1034 bytes)"),
                    HasSubstr("has 1031 bytes")));
}

TEST_F(TokenShardErrors, WrongMagic) {
  EXPECT_THAT(errorFor(header(12345, 1, 1) + std::string(2, '\0')),
              AllOf(HasSubstr(path_), HasSubstr("is 12345, expected 20240520")));
}

TEST_F(TokenShardErrors, WrongVersion) {
  EXPECT_THAT(errorFor(header(20240520, 3, 1) + std::string(2, '\0')), AllOf(HasSubstr(path_), HasSubstr("version 3")));
}

TEST_F(TokenShardErrors, CountMismatch) {
  EXPECT_THAT(errorFor(header(20240520, 1, 2) + std::string(8, '\0')),
              AllOf(HasSubstr(path_), HasSubstr("announces 2 tokens (1028 bytes)"), HasSubstr("has 1032 bytes")));
}

TEST_F(TokenShardErrors, TokenIdAtOrAboveVocab) {
  EXPECT_THAT(errorFor(shardBytes({1, 2, 256, 257, 3, 256})),
              AllOf(HasSubstr(path_), HasSubstr("position 3 is 257"), HasSubstr("vocab_size 257")));
  writeTextFile(path_, shardBytes({1, 2, 256, 257, 3, 256}));
  EXPECT_EQ(TokenShard(path_, 258).size(), 6);
  EXPECT_THAT(errorFor(shardBytes({1, 256}), 256), AllOf(HasSubstr(path_), HasSubstr("vocab_size 256")));
}

TEST_F(TokenShardErrors, CorruptIndex) {
  const std::string index = dir_.file("bad.idx");
  writeTextFile(index, indexBytes({0, 2, 5}));
  EXPECT_THAT(errorFor(shardBytes({1, 256, 3, 4, 5, 256})),
              AllOf(HasSubstr(index), HasSubstr("is 5 but the shard holds 6 tokens")));
  writeTextFile(index, indexBytes({0, 3, 6}));
  EXPECT_THAT(errorFor(shardBytes({1, 256, 3, 4, 5, 256})),
              AllOf(HasSubstr(index), HasSubstr("document 0 (tokens [0, 3)) ends with token 3")));
  writeTextFile(index, indexBytes({0, 3, 6}).substr(0, 1030));
  EXPECT_THAT(errorFor(shardBytes({1, 256, 3, 4, 5, 256})), AllOf(HasSubstr(index), HasSubstr("size mismatch")));
}

}  // namespace
}  // namespace loom::data
