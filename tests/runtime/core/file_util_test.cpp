#include "runtime/core/file_util.h"

#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace loom {
namespace {

TEST(FileUtilTest, AtomicWriteReplacesContentAndLeavesNoTemporary) {
  test::TempDir dir;
  const std::string path = dir.file("state.json");
  writeFileAtomically(path, "first");
  writeFileAtomically(path, "second");
  EXPECT_EQ(readFile(path, "state"), "second");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1) << "a temporary file was left behind";
}

TEST(FileUtilTest, ReadFileNamesMissingPath) {
  test::TempDir dir;
  try {
    readFile(dir.file("absent.bin"), "data.train_path");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("data.train_path"), std::string::npos);
    EXPECT_NE(std::string(e.what_without_backtrace()).find("does not exist"), std::string::npos);
  }
}

TEST(FileUtilTest, EnsureWritableDirCreatesParents) {
  test::TempDir dir;
  const std::string nested = dir.file("a/b/c");
  ensureWritableDir(nested, "train.out_dir");
  EXPECT_TRUE(std::filesystem::is_directory(nested));
}

TEST(FileUtilTest, EnsureWritableDirRejectsAnUnwritableFilesystem) {
  // /proc refuses new entries even for root, unlike permission bits.
  try {
    ensureWritableDir("/proc/loom-cannot-exist/out", "train.out_dir");
    FAIL();
  } catch (const InputError& e) {
    const std::string msg = e.what_without_backtrace();
    EXPECT_NE(msg.find("train.out_dir"), std::string::npos) << msg;
    EXPECT_NE(msg.find("/proc/loom-cannot-exist/out"), std::string::npos) << msg;
  }
}

TEST(FileUtilTest, EnsureWritableDirRejectsAFileInTheWay) {
  test::TempDir dir;
  test::writeTextFile(dir.file("plain"), "x");
  try {
    ensureWritableDir(dir.file("plain") + "/sub", "train.out_dir");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("train.out_dir"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom
