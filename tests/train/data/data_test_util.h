// Helpers for the data tests: shard and index bytes built by hand, the way
// llm.c writes them (int header[256] then raw uint16 tokens, little-endian),
// independently of train/data's encoders; and InputError capture.
#pragma once

#include "runtime/core/error.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom::data::test {

inline void putLittleEndian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

/// 256 int32: magic, version, count, then zeros.
inline std::string header(int32_t magic, int32_t version, int32_t count) {
  std::string out;
  putLittleEndian(out, static_cast<uint32_t>(magic), 4);
  putLittleEndian(out, static_cast<uint32_t>(version), 4);
  putLittleEndian(out, static_cast<uint32_t>(count), 4);
  while (out.size() < 1024) out.push_back('\0');
  return out;
}

inline std::string shardBytes(const std::vector<uint16_t>& tokens) {
  std::string out = header(20240520, 1, static_cast<int32_t>(tokens.size()));
  for (uint16_t t : tokens) putLittleEndian(out, t, 2);
  return out;
}

inline std::string indexBytes(const std::vector<int64_t>& offsets) {
  std::string out = header(0x5844494C, 1, static_cast<int32_t>(offsets.size() - 1));
  for (int64_t o : offsets) putLittleEndian(out, static_cast<uint64_t>(o), 8);
  return out;
}

/// `count` tokens split into documents of `doc_len` tokens (the last may be
/// shorter), each ending with the end-of-document token 256; other tokens are
/// a simple function of the position so that windows differ.
inline std::vector<uint16_t> syntheticTokens(int64_t count, int64_t doc_len) {
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const bool end = (i + 1) % doc_len == 0 || i + 1 == count;
    tokens[static_cast<size_t>(i)] = end ? 256 : static_cast<uint16_t>((i * 7 + 3) % 256);
  }
  return tokens;
}

/// The message of the InputError `fn` throws; a test failure when it throws
/// nothing or something else.
template <typename Fn>
std::string inputErrorOf(Fn&& fn) {
  try {
    fn();
  } catch (const loom::InputError& e) {
    return loom::errorMessage(e);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected an InputError, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected an InputError, nothing was thrown";
  return {};
}

}  // namespace loom::data::test
