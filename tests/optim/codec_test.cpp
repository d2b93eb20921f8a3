// The pseudo-gradient codecs (optim/outer/codec.h) against their stated error
// bounds, with references computed independently in double from the inputs
// (../shared/reference/optimizers.md §7 tests 13-14).
#include "optim/outer/codec.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace loom::optim::outer {
namespace {

using Codec = PseudoGradientCodec;
const std::vector<Codec> kCodecs = {Codec::kFp32, Codec::kFp16, Codec::kBf16, Codec::kUint8MinMax, Codec::kUint8Lut};

at::Tensor randn(int64_t n, uint64_t seed) {
  return at::randn({n}, at::make_generator<at::CPUGeneratorImpl>(seed));
}

at::Tensor encoded(Codec codec, const at::Tensor& values) {
  at::Tensor bytes = at::empty({encodedBytes(codec, values.numel())}, at::kByte);
  encode(codec, values, bytes);
  return bytes;
}

at::Tensor decoded(Codec codec, const at::Tensor& bytes, int64_t n) {
  at::Tensor values = at::empty({n}, at::kFloat);
  decode(codec, bytes, values);
  return values;
}

at::Tensor roundTrip(Codec codec, const at::Tensor& values) {
  return decoded(codec, encoded(codec, values), values.numel());
}

bool bitwiseEqual(const at::Tensor& a, const at::Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.data_ptr(), b.data_ptr(), a.numel() * a.element_size()) == 0;
}

std::vector<float> floats(const at::Tensor& t) {
  const float* p = t.data_ptr<float>();
  return std::vector<float>(p, p + t.numel());
}

TEST(CodecTest, EncodedBytesAndRoundTripSizes) {
  for (int64_t n : {0, 1, 7, 1000}) {
    EXPECT_EQ(encodedBytes(Codec::kFp32, n), 4 * n);
    EXPECT_EQ(encodedBytes(Codec::kFp16, n), 2 * n);
    EXPECT_EQ(encodedBytes(Codec::kBf16, n), 2 * n);
    EXPECT_EQ(encodedBytes(Codec::kUint8MinMax, n), n == 0 ? 0 : 8 + n);
    EXPECT_EQ(encodedBytes(Codec::kUint8Lut, n), n == 0 ? 0 : 1024 + n);
    for (Codec codec : kCodecs) {
      const at::Tensor x = randn(n, 1);
      const at::Tensor x_hat = roundTrip(codec, x);
      EXPECT_EQ(x_hat.numel(), n) << codecName(codec);
      // Encoding is deterministic and decoding is a pure function of the bytes.
      EXPECT_TRUE(at::equal(encoded(codec, x), encoded(codec, x))) << codecName(codec);
      EXPECT_TRUE(bitwiseEqual(roundTrip(codec, x), x_hat)) << codecName(codec);
    }
  }
  EXPECT_STREQ(codecName(Codec::kUint8Lut), "uint8_lut");
}

TEST(CodecTest, Fp32IsLosslessBitwise) {
  at::Tensor x = randn(1001, 2) * 1e3;
  const float specials[] = {0.0f,
                            -0.0f,
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::min()};
  for (size_t i = 0; i < std::size(specials); ++i) x[i] = specials[i];
  EXPECT_TRUE(bitwiseEqual(roundTrip(Codec::kFp32, x), x));
}

// Half has 11 significant bits: |x - x^| <= 2^-11 |x| for normal values, 2^-25 (half the
// subnormal spacing) below 2^-14; values beyond the range clamp to +-65504.
TEST(CodecTest, Fp16WithinHalfAnUlpAndClamps) {
  for (double magnitude : {1e-6, 1e-3, 1.0, 1e3, 1e4}) {
    const at::Tensor x = (randn(10000, 3) * magnitude).clamp(-65504, 65504);
    const std::vector<float> in = floats(x);
    const std::vector<float> out = floats(roundTrip(Codec::kFp16, x));
    for (size_t i = 0; i < in.size(); ++i) {
      const double bound = std::max(std::ldexp(std::fabs(double(in[i])), -11), std::ldexp(1.0, -25));
      ASSERT_LE(std::fabs(double(in[i]) - out[i]), bound) << "x=" << in[i] << " magnitude " << magnitude;
    }
  }
  const at::Tensor big = at::tensor({65504.0f, 65519.0f, 70000.0f, -1e9f, 3e38f});
  const std::vector<float> clamped = floats(roundTrip(Codec::kFp16, big));
  EXPECT_EQ(clamped, (std::vector<float>{65504.0f, 65504.0f, 65504.0f, -65504.0f, 65504.0f}));
}

// bfloat16 has 8 significant bits: |x - x^| <= 2^-8 |x|, ties to even (checked against
// libtorch's own conversion), and values past the largest finite bf16 clamp to it.
TEST(CodecTest, Bf16RoundsToNearestEven) {
  const at::Tensor x = randn(10000, 4) * 37.0;
  const std::vector<float> in = floats(x);
  const at::Tensor x_hat = roundTrip(Codec::kBf16, x);
  const std::vector<float> out = floats(x_hat);
  for (size_t i = 0; i < in.size(); ++i) ASSERT_LE(std::fabs(double(in[i]) - out[i]), std::ldexp(std::fabs(in[i]), -8));
  EXPECT_TRUE(bitwiseEqual(x_hat, x.to(at::kBFloat16).to(at::kFloat)));
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: even is 1. 1 + 3 * 2^-8: even is 1 + 2^-6.
  const at::Tensor ties = at::tensor({1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -(1.0f + 0x1p-8f)});
  EXPECT_EQ(floats(roundTrip(Codec::kBf16, ties)), (std::vector<float>{1.0f, 1.0f + 0x1p-6f, -1.0f}));
  const std::vector<float> huge =
      floats(roundTrip(Codec::kBf16, at::tensor({std::numeric_limits<float>::max(), -3.39e38f})));
  EXPECT_EQ(huge, (std::vector<float>{3.38953139e38f, -3.38953139e38f}));
}

// Truncation: 0 <= x - x^ < (max - min) / 255 + ulp(x^) (the one fp32 rounding of x^);
// min and max themselves decode exactly.
TEST(CodecTest, MinMaxTruncatesWithinOneStep) {
  const std::vector<at::Tensor> inputs = {randn(100003, 5), randn(5000, 11) * 1e-3 + 1000.0, randn(777, 6).exp() * 1e30,
                                          randn(3, 12)};
  for (const at::Tensor& x : inputs) {
    const at::Tensor bytes = encoded(Codec::kUint8MinMax, x);
    float header[2];
    std::memcpy(header, bytes.data_ptr(), sizeof(header));
    EXPECT_EQ(header[0], x.min().item<float>());
    EXPECT_EQ(header[1], x.max().item<float>());
    const double step = (double(header[1]) - header[0]) / 255;
    const std::vector<float> in = floats(x);
    const std::vector<float> out = floats(decoded(Codec::kUint8MinMax, bytes, x.numel()));
    for (size_t i = 0; i < in.size(); ++i) {
      const double err = double(in[i]) - out[i];
      ASSERT_GE(err, 0) << "x=" << in[i] << " x^=" << out[i];
      ASSERT_LT(err, step + std::ldexp(std::max(std::fabs(in[i]), std::fabs(out[i])), -23))
          << "x=" << in[i] << " x^=" << out[i];
      if (in[i] == header[0] || in[i] == header[1]) {
        ASSERT_EQ(out[i], in[i]);
      }
    }
  }
}

TEST(CodecTest, MinMaxConstantAndTinyInputsAreExact) {
  for (const at::Tensor& x :
       {at::full({1000}, 3.5f), at::tensor({-2.25f}), at::tensor({-1.0f, 7.0f}), at::zeros({5})}) {
    EXPECT_TRUE(bitwiseEqual(roundTrip(Codec::kUint8MinMax, x), x)) << x;
  }
}

// The LUT codec's parts, recomputed in double: sigma and scale, each byte q against
// round(x / scale) + 128 (clipped at 0 and 255), and each table entry against the mean
// of the values whose byte is its index (an empty bin: its centre).
TEST(CodecTest, LutEntriesAreTheMeansOfTheirBins) {
  const int64_t n = 100000;
  // A bulk at sigma ~ 0.01 and 50 outliers at +-1 that inflate sigma: they clip into the
  // end bins, and the bins between the bulk and +-3 sigma stay empty.
  const at::Tensor x = randn(n, 7) * 0.01;
  x.slice(0, 0, 50).fill_(1.0f);
  x.slice(0, 50, 100).fill_(-1.0f);
  const at::Tensor bytes = encoded(Codec::kUint8Lut, x);
  float lut[256];
  std::memcpy(lut, bytes.data_ptr(), sizeof(lut));
  const uint8_t* q = bytes.data_ptr<uint8_t>() + sizeof(lut);
  const std::vector<float> in = floats(x);
  double sum_sq = 0;
  for (float v : in) sum_sq += double(v) * v;
  const double scale = 6 * std::sqrt(sum_sq / (n - 1)) / 256;
  std::vector<double> sums(256, 0.0);
  std::vector<int64_t> counts(256, 0);
  int64_t clipped = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = in[i] / scale;
    if (q[i] == 0) {
      ASSERT_LE(t, -127.5 + 1e-9) << i;
    } else if (q[i] == 255) {
      ASSERT_GE(t, 126.5 - 1e-9) << i;
    } else {
      ASSERT_LE(std::fabs(t - (q[i] - 128)), 0.5 + 1e-9) << i;
    }
    clipped += std::fabs(t) > 128;  // beyond 3 sigma
    sums[q[i]] += in[i];
    ++counts[q[i]];
  }
  EXPECT_GT(clipped, 0) << "the data should exercise clipping";
  int64_t empty = 0;
  for (int j = 0; j < 256; ++j) {
    const double expected = counts[j] > 0 ? sums[j] / counts[j] : (j - 128) * scale;
    empty += counts[j] == 0;
    EXPECT_NEAR(lut[j], expected, 1e-6 * std::fabs(expected)) << "bin " << j << " holds " << counts[j];
  }
  EXPECT_GT(empty, 0) << "the data should leave some bin empty";
}

// x and x^ = LUT[q] lie in the same bin of width `scale`, so |x - x^| <= scale in bins
// 1..254; a value clipped into bin 0 or 255 is off by at most its bin's spread, here
// max|x| - 126.5 scale. (scale / 2 would be the bound for the bin centre, not its mean.)
TEST(CodecTest, LutErrorWithinItsBin) {
  const int64_t n = 50000;
  const at::Tensor x = randn(n, 8) * 3.0;
  const std::vector<float> in = floats(x);
  const at::Tensor bytes = encoded(Codec::kUint8Lut, x);
  const std::vector<float> out = floats(decoded(Codec::kUint8Lut, bytes, n));
  float lut[256];
  std::memcpy(lut, bytes.data_ptr(), sizeof(lut));
  const uint8_t* q = bytes.data_ptr<uint8_t>() + sizeof(lut);
  const double sigma = std::sqrt(x.to(at::kDouble).square().sum().item<double>() / (n - 1));
  const double scale = 6 * sigma / 256;
  const double max_abs = x.abs().max().item<float>();
  int64_t beyond = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double err = std::fabs(double(in[i]) - out[i]);
    if (q[i] > 0 && q[i] < 255) {
      ASSERT_LE(err, scale * (1 + 1e-6)) << "x=" << in[i] << " bin " << int(q[i]);
    } else {
      ASSERT_LE(err, (max_abs - 126.5 * scale) * (1 + 1e-6)) << "x=" << in[i];
    }
    if (std::fabs(in[i]) >= 3 * sigma) {  // clipped: decodes to an end bin's mean
      ++beyond;
      ASSERT_EQ(q[i], in[i] > 0 ? 255 : 0) << "x=" << in[i];
      ASSERT_EQ(out[i], lut[q[i]]) << "x=" << in[i];
    }
  }
  EXPECT_GT(beyond, 0);
}

TEST(CodecTest, LutTinyZeroAndConstantInputsAreExact) {
  for (const at::Tensor& x : {at::tensor({-2.5f}), at::tensor({1e-30f}), at::full({1000}, 0.75f), at::zeros({10}),
                              at::tensor({-4.0f, 4.0f})}) {
    EXPECT_TRUE(bitwiseEqual(roundTrip(Codec::kUint8Lut, x), x)) << x;
  }
  const at::Tensor bytes = encoded(Codec::kUint8Lut, at::zeros({10}));
  const at::Tensor q = bytes.slice(0, 1024);
  EXPECT_TRUE(q.eq(128).all().item<bool>());
  EXPECT_TRUE(bytes.slice(0, 0, 1024).eq(0).all().item<bool>());  // sigma = 0: every entry 0
}

TEST(CodecTest, SizeOrTypeMismatchThrows) {
  for (Codec codec : kCodecs) {
    const at::Tensor x = randn(10, 9);
    at::Tensor short_bytes = at::empty({encodedBytes(codec, 10) - 1}, at::kByte);
    try {
      encode(codec, x, short_bytes);
      ADD_FAILURE() << codecName(codec) << ": no throw";
    } catch (const c10::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("10 values take " + std::to_string(encodedBytes(codec, 10))),
                std::string::npos)
          << e.what();
    }
    at::Tensor wrong_count = at::empty({11}, at::kFloat);
    EXPECT_THROW(decode(codec, encoded(codec, x), wrong_count), InputError) << codecName(codec);
    at::Tensor bytes = at::empty({encodedBytes(codec, 10)}, at::kByte);
    EXPECT_THROW(encode(codec, x.to(at::kDouble), bytes), InputError) << codecName(codec);
    EXPECT_THROW(encode(codec, randn(20, 9).slice(0, 0, 20, 2), bytes), InputError) << codecName(codec);
  }
}

TEST(CodecTest, NonFiniteThrowsNamingTheElement) {
  for (Codec codec : kCodecs) {
    for (auto [index, value] : {std::pair<int64_t, float>{17, std::nanf("")},
                                {5000, std::numeric_limits<float>::infinity()},
                                {9999, -std::numeric_limits<float>::infinity()}}) {
      at::Tensor x = randn(10000, 10);
      x[index] = value;
      at::Tensor bytes = at::empty({encodedBytes(codec, x.numel())}, at::kByte);
      try {
        encode(codec, x, bytes);
        ADD_FAILURE() << codecName(codec) << ": no throw for " << value;
      } catch (const c10::ValueError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find(std::string(codecName(codec)) +
                               " encode: pseudo-gradient has a non-finite value at "
                               "element " +
                               std::to_string(index)),
                  std::string::npos)
            << message;
        EXPECT_NE(message.find("lower the inner lr"), std::string::npos) << message;
      }
    }
  }
}

}  // namespace
}  // namespace loom::optim::outer
