// scripts/brown_to_text.py on a small tagged sample, run as the pipeline runs it.
#include "tests/support/test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace loom::data {
namespace {

using loom::test::readTextFile;
using loom::test::runCommand;
using loom::test::shellQuote;
using loom::test::sourcePath;
using loom::test::TempDir;
using loom::test::writeTextFile;
using ::testing::HasSubstr;

std::string script(const std::string& src, const std::string& out) {
  return "/usr/bin/python3 " + shellQuote(sourcePath("scripts/brown_to_text.py")) + " " + shellQuote(src) + " " +
         shellQuote(out);
}

TEST(BrownToText, JoinsTaggedTokensIntoEnglishText) {
  TempDir dir;
  const std::string src = dir.file("package");
  std::filesystem::create_directories(src);
  writeTextFile(src + "/ca01",
                "\n\n\tThe/at Fulton/np-tl Jury/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ./.\n"
                "It/pps added/vbd ,/, ``/`` we/ppss ca/md n't/* tell/vb (/( yet/rb )/) ''/'' ;/. John's/np$ "
                "1/2/cd share/nn 's/bez gone/vbn !/.\n\n\n"
                "Merger/nn-hl proposed/vbn-hl\n"
                "However/wrb ,/, the/at jurors/nns '/' report/nn :/: ``/`` Why/wrb ?/. ''/''\n\n");
  writeTextFile(src + "/cr09", "\tEnd/nn ./.\n");
  writeTextFile(src + "/README", "not/xx a/xx document/xx\n");
  writeTextFile(src + "/cats.txt", "ca01 news\n");
  const std::string out = dir.file("text");

  const auto result = runCommand(script(src, out));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("wrote 2 documents"));
  EXPECT_EQ(readTextFile(out + "/ca01.txt"),
            "The Fulton Jury said \"no evidence\" was found. It added, \"we can't tell (yet)\"; John's 1/2 share's "
            "gone!\n\n"
            "Merger proposed\n\n"
            "However, the jurors' report: \"Why?\"\n");
  EXPECT_EQ(readTextFile(out + "/cr09.txt"), "End.\n");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(out), {}), 2) << "README and cats.txt are skipped";
}

TEST(BrownToText, FailsClearlyWithoutDocuments) {
  TempDir dir;
  auto result = runCommand(script(dir.file("missing"), dir.file("out")));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr(dir.file("missing")));
  writeTextFile(dir.file("README"), "x\n");
  result = runCommand(script(dir.path(), dir.file("out")));
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("no Brown documents"));
}

}  // namespace
}  // namespace loom::data
