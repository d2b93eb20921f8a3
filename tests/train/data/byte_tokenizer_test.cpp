#include "train/data/byte_tokenizer.h"

#include <gtest/gtest.h>

namespace loom::data {
namespace {

TEST(ByteTokenizer, EncodesEachByteAsItsValue) {
  const std::string text("A\xC3\xA9\n\0\xFF", 6);  // 'A', UTF-8 e-acute, newline, NUL, 0xFF
  const std::vector<uint16_t> tokens = ByteTokenizer().encode(text);
  ASSERT_EQ(tokens.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    EXPECT_EQ(tokens[i], static_cast<unsigned char>(text[i])) << "byte " << i;
  }
}

TEST(ByteTokenizer, RoundTripsEveryByteValue) {
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const ByteTokenizer tokenizer;
  const std::vector<uint16_t> tokens = tokenizer.encode(all);
  for (uint16_t t : tokens) EXPECT_LT(t, kEodToken);
  EXPECT_EQ(tokenizer.decode(tokens), all);
}

TEST(ByteTokenizer, DecodesEodAndUnknownIdsAsMarkers) {
  const ByteTokenizer tokenizer;
  EXPECT_EQ(tokenizer.decode(std::vector<uint16_t>{'h', 'i', 256, 'x'}), "hi<|eod|>x");
  EXPECT_EQ(tokenizer.decode(std::vector<int64_t>{'o', 'k', 256, 300, -1}), "ok<|eod|><|id:300|><|id:-1|>");
  EXPECT_EQ(kMinVocabSize, 257);
}

}  // namespace
}  // namespace loom::data
