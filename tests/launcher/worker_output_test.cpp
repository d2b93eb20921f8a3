// Worker output routing: whole prefixed lines on the console whatever the pipe's
// chunking, raw lines in the log file, a bounded tail, and long lines split.
#include "launcher/worker_output.h"
#include "runtime/core/error.h"
#include "tests/support/test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace loom::launcher {
namespace {

using loom::test::readTextFile;
using loom::test::TempDir;

class WorkerOutputTest : public ::testing::Test {
 protected:
  WorkerOutputTest()
      : console_path_(dir_.file("console")),
        console_(::open(console_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {}

  StreamTarget target(size_t tail_lines = 0) const {
    return StreamTarget{"[rank 3]: ", console_.get(), dir_.file("rank.log"), tail_lines};
  }

  TempDir dir_;
  std::string console_path_;
  UniqueFd console_;
};

TEST_F(WorkerOutputTest, LinesArePrefixedWholeWhateverTheChunking) {
  const std::string text = "first line\nsecond\n\nthird without newline";
  for (size_t chunk : {1, 2, 5, 64}) {
    ASSERT_EQ(::ftruncate(console_.get(), 0), 0);
    ASSERT_EQ(::lseek(console_.get(), 0, SEEK_SET), 0);
    {
      WorkerOutput output(target());
      for (size_t i = 0; i < text.size(); i += chunk) {
        output.append(text.data() + i, std::min(chunk, text.size() - i));
      }
      output.finish();
    }
    EXPECT_EQ(readTextFile(console_path_),
              "[rank 3]: first line\n[rank 3]: second\n[rank 3]: \n[rank 3]: third without newline\n")
        << "chunk " << chunk;
    EXPECT_EQ(readTextFile(dir_.file("rank.log")), "first line\nsecond\n\nthird without newline\n");
  }
}

TEST_F(WorkerOutputTest, TailKeepsTheLastLinesOnly) {
  WorkerOutput output(target(/*tail_lines=*/2));
  const std::string text = "a\nb\nc\nd";
  output.append(text.data(), text.size());
  EXPECT_EQ(output.tail(), (std::deque<std::string>{"b", "c"}));
  output.finish();
  EXPECT_EQ(output.tail(), (std::deque<std::string>{"c", "d"}));
}

TEST_F(WorkerOutputTest, OverlongLinesArePassedOnInPieces) {
  WorkerOutput output(StreamTarget{"> ", console_.get(), "", 0});
  const std::string line(kMaxLineBytes + 10, 'x');
  output.append(line.data(), line.size());
  output.append("\n", 1);
  const std::string expected = "> " + std::string(kMaxLineBytes, 'x') + "\n> " + std::string(10, 'x') + "\n";
  EXPECT_EQ(readTextFile(console_path_), expected);
}

TEST_F(WorkerOutputTest, DrainReadsAPipeUntilEndOfStream) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  WorkerOutput output(target(/*tail_lines=*/5));
  ASSERT_EQ(::write(write_end.get(), "one\ntw", 6), 6);
  EXPECT_TRUE(drainInto(read_end.get(), output));  // more may come
  ASSERT_EQ(::write(write_end.get(), "o", 1), 1);
  write_end.reset();
  EXPECT_FALSE(drainInto(read_end.get(), output));  // end of stream: the partial line is passed on
  EXPECT_EQ(output.tail(), (std::deque<std::string>{"one", "two"}));
  EXPECT_EQ(readTextFile(console_path_), "[rank 3]: one\n[rank 3]: two\n");
}

TEST_F(WorkerOutputTest, UnwritableLogFileIsAnInputErrorNamingThePath) {
  const std::string path = dir_.file("missing-dir/rank.log");
  try {
    WorkerOutput output(StreamTarget{"", -1, path, 0});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(path), std::string::npos);
  }
}

}  // namespace
}  // namespace loom::launcher
