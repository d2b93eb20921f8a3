#include "train/data/byte_tokenizer.h"

namespace loom::data {
namespace {

void appendToken(std::string& out, int64_t token) {
  if (token >= 0 && token < kEodToken) {
    out.push_back(static_cast<char>(static_cast<unsigned char>(token)));
  } else if (token == kEodToken) {
    out.append(ByteTokenizer::kEodMarker);
  } else {
    out.append("<|id:").append(std::to_string(token)).append("|>");
  }
}

}  // namespace

std::vector<uint16_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<uint16_t> tokens(text.size());
  for (size_t i = 0; i < text.size(); ++i) tokens[i] = static_cast<unsigned char>(text[i]);
  return tokens;
}

std::string ByteTokenizer::decode(const uint16_t* tokens, size_t count) const {
  std::string out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) appendToken(out, tokens[i]);
  return out;
}

std::string ByteTokenizer::decode(const std::vector<uint16_t>& tokens) const {
  return decode(tokens.data(), tokens.size());
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& tokens) const {
  std::string out;
  out.reserve(tokens.size());
  for (int64_t token : tokens) appendToken(out, token);
  return out;
}

}  // namespace loom::data
