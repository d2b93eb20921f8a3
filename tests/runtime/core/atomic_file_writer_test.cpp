// The properties checkpoints, safetensors files and token shards rely on.
#include "runtime/core/atomic_file_writer.h"

#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <iterator>

namespace loom {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

size_t entriesIn(const std::string& dir) {
  const std::filesystem::directory_iterator entries(dir);
  return static_cast<size_t>(std::distance(begin(entries), end(entries)));
}

TEST(AtomicFileWriterTest, WriteAtOverwritesWithoutMovingTheAppendPosition) {
  test::TempDir dir;
  const std::string path = dir.file("shard.bin");
  AtomicFileWriter writer(path);
  writer.write("....tail", 8);
  writer.writeAt(0, "HEAD", 4);
  writer.write("!", 1);
  writer.writeAt(5, "A", 1);
  writer.commit();
  EXPECT_EQ(test::readTextFile(path), "HEADtAil!");
}

TEST(AtomicFileWriterTest, StreamsPiecesIntoOneFileOnCommit) {
  test::TempDir dir;
  const std::string path = dir.file("out.bin");
  AtomicFileWriter writer(path);
  writer.write("abc", 3);
  writer.write("", 0);
  writer.write("defg", 4);
  EXPECT_FALSE(std::filesystem::exists(path)) << "the target appeared before commit";
  writer.commit();
  EXPECT_EQ(test::readTextFile(path), "abcdefg");
  EXPECT_EQ(entriesIn(dir.path()), 1u);
}

TEST(AtomicFileWriterTest, AnAbandonedWriteKeepsTheOldFileAndRemovesItsTemporary) {
  test::TempDir dir;
  const std::string path = dir.file("out.bin");
  test::writeTextFile(path, "old");
  {
    AtomicFileWriter writer(path);
    writer.write("new bytes", 9);
    EXPECT_EQ(entriesIn(dir.path()), 2u);  // the target and the temporary
  }
  EXPECT_EQ(test::readTextFile(path), "old");
  EXPECT_EQ(entriesIn(dir.path()), 1u);
}

TEST(AtomicFileWriterTest, TwoWritersOfOneTargetDoNotShareATemporary) {
  test::TempDir dir;
  const std::string path = dir.file("out.bin");
  AtomicFileWriter first(path);
  AtomicFileWriter second(path);
  first.write("first", 5);
  second.write("second", 6);
  first.commit();
  EXPECT_EQ(test::readTextFile(path), "first");
  second.commit();
  EXPECT_EQ(test::readTextFile(path), "second");
  EXPECT_EQ(entriesIn(dir.path()), 1u);
}

TEST(AtomicFileWriterTest, AFailedRenameKeepsNoTemporary) {
  test::TempDir dir;
  const std::string path = dir.file("target");
  std::filesystem::create_directories(path + "/occupied");  // rename onto a non-empty directory fails
  AtomicFileWriter writer(path);
  writer.write("x", 1);
  try {
    writer.commit();
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what_without_backtrace(), AllOf(HasSubstr("cannot rename"), HasSubstr(path)));
  }
  EXPECT_EQ(entriesIn(dir.path()), 1u);
  EXPECT_TRUE(std::filesystem::is_directory(path + "/occupied"));
}

TEST(AtomicFileWriterTest, AMissingDirectoryIsAnInputErrorNamingThePath) {
  test::TempDir dir;
  const std::string path = dir.file("missing/out.bin");
  try {
    AtomicFileWriter writer(path);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what_without_backtrace(),
                AllOf(HasSubstr("cannot write \"" + path + "\""), HasSubstr("No such file or directory")));
  }
  EXPECT_EQ(entriesIn(dir.path()), 0u);
}

}  // namespace
}  // namespace loom
