// loom-data as a subprocess: text files -> shards that decode back to the
// inputs, the document-level validation split, --check, and exit codes.
#include "tests/support/test_util.h"
#include "tests/train/data/data_test_util.h"
#include "train/data/byte_tokenizer.h"
#include "train/data/token_shard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace loom::data {
namespace {

using loom::test::loomBinary;
using loom::test::readTextFile;
using loom::test::runCommand;
using loom::test::shellQuote;
using loom::test::TempDir;
using loom::test::writeTextFile;
using ::testing::HasSubstr;

std::string loomData(const std::string& args) {
  return shellQuote(loomBinary("loom-data")) + " " + args;
}

// The texts of a shard's documents, decoded (each ends with the EOD marker).
std::vector<std::string> decodedDocuments(const std::string& path) {
  const TokenShard shard(path, kMinVocabSize);
  std::vector<std::string> docs;
  const auto& starts = shard.documents();
  for (size_t d = 0; d + 1 < starts.size(); ++d) {
    docs.push_back(ByteTokenizer().decode(shard.tokens() + starts[d], starts[d + 1] - starts[d]));
  }
  return docs;
}

class LoomDataCli : public ::testing::Test {
 protected:
  // Writes `count` documents doc0.txt .. and returns their quoted paths and texts.
  std::string writeInputs(int count) {
    std::string args;
    for (int i = 0; i < count; ++i) {
      const std::string text = "document " + std::to_string(i) + "\nline two \xC3\xA9 " + std::string(i % 3, '!');
      texts_.push_back(text);
      const std::string path = dir_.file("doc" + std::to_string(i) + ".txt");
      writeTextFile(path, text);
      args += " " + shellQuote(path);
    }
    return args;
  }

  TempDir dir_;
  std::vector<std::string> texts_;
};

TEST_F(LoomDataCli, TextsBecomeShardsThatDecodeToTheInputs) {
  const std::string inputs = writeInputs(7);
  const std::string out = dir_.file("out");
  const auto result = runCommand(loomData("--out-dir " + shellQuote(out) + " --val-every 3" + inputs));
  ASSERT_EQ(result.exit_code, 0) << result.output;

  // Documents 3 and 6 (1-based: every 3rd) go to val, the rest to train, in order.
  std::vector<std::string> train, val;
  for (int i = 0; i < 7; ++i) ((i + 1) % 3 == 0 ? val : train).push_back(texts_[i] + "<|eod|>");
  EXPECT_EQ(decodedDocuments(out + "/train.bin"), train);
  EXPECT_EQ(decodedDocuments(out + "/val.bin"), val);
  EXPECT_TRUE(std::filesystem::exists(out + "/train.idx"));
  EXPECT_TRUE(std::filesystem::exists(out + "/val.idx"));
  int64_t train_tokens = 0;
  for (const auto& t : train) train_tokens += static_cast<int64_t>(t.size()) - 7 + 1;  // marker -> 1 token
  EXPECT_THAT(result.output, HasSubstr("train.bin: 5 documents, " + std::to_string(train_tokens) + " tokens"));
  EXPECT_THAT(result.output, HasSubstr("val.bin: 2 documents"));

  const auto check =
      runCommand(loomData("--check " + shellQuote(out + "/train.bin") + " " + shellQuote(out + "/val.bin")));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_THAT(check.output, HasSubstr("train.bin: ok, 5 documents"));
}

TEST_F(LoomDataCli, CustomNamesAndNoValidationShard) {
  const std::string inputs = writeInputs(2);
  const std::string out = dir_.file("out");
  const auto result = runCommand(loomData("--out-dir " + shellQuote(out) + " --name-train all" + inputs));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(decodedDocuments(out + "/all.bin"),
            (std::vector<std::string>{texts_[0] + "<|eod|>", texts_[1] + "<|eod|>"}));
  EXPECT_FALSE(std::filesystem::exists(out + "/val.bin"));
}

TEST_F(LoomDataCli, BadInputsExitWithCode2AndNameTheProblem) {
  const std::string inputs = writeInputs(2);
  const std::string out = dir_.file("out");
  auto result = runCommand(loomData("--out-dir " + shellQuote(out) + inputs + " " + shellQuote(dir_.file("nope.txt"))));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr(dir_.file("nope.txt")));
  EXPECT_FALSE(std::filesystem::exists(out + "/train.bin")) << "a failed run must not leave a shard";
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(out), {}), 0) << "nor temporaries";

  writeTextFile(dir_.file("file"), "x");
  result = runCommand(loomData("--out-dir " + shellQuote(dir_.file("file") + "/sub") + inputs));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("--out-dir"));
  EXPECT_THAT(result.output, HasSubstr(dir_.file("file") + "/sub"));

  result = runCommand(loomData("--out-dir " + shellQuote(out) + " --val-every 5" + inputs));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("--val-every 5"));

  result = runCommand(loomData("--out-dir " + shellQuote(out)));
  EXPECT_EQ(result.exit_code, 2) << result.output;

  writeTextFile(dir_.file("bad.bin"), test::header(20240520, 1, 4));
  result = runCommand(loomData("--check " + shellQuote(dir_.file("bad.bin"))));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr(dir_.file("bad.bin") + ": truncated"));
}

}  // namespace
}  // namespace loom::data
