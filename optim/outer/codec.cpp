#include "optim/outer/codec.h"

#include "runtime/core/error.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace loom::optim::outer {
namespace {

constexpr int kBins = 256;
constexpr int64_t kLutHeaderBytes = kBins * sizeof(float);
constexpr int64_t kMinMaxHeaderBytes = 2 * sizeof(float);
constexpr float kHalfMax = 65504.0f;
constexpr float kBFloat16Max = 3.38953139e38f;  // 0x7F7F: larger values would round to inf

void checkValues(PseudoGradientCodec codec, const char* op, const at::Tensor& values) {
  LOOM_CHECK_INPUT(values.scalar_type() == at::kFloat && values.device().is_cpu() && values.is_contiguous(),
                   codecName(codec), " ", op, ": values must be a contiguous float32 CPU tensor, got ",
                   values.scalar_type(), " on ", values.device(), values.is_contiguous() ? "" : " (not contiguous)");
}

void checkBytes(PseudoGradientCodec codec, const char* op, const at::Tensor& bytes, int64_t n) {
  LOOM_CHECK_INPUT(bytes.scalar_type() == at::kByte && bytes.device().is_cpu() && bytes.is_contiguous(),
                   codecName(codec), " ", op, ": bytes must be a contiguous uint8 CPU tensor, got ",
                   bytes.scalar_type(), " on ", bytes.device(), bytes.is_contiguous() ? "" : " (not contiguous)");
  LOOM_CHECK_INPUT(bytes.numel() == encodedBytes(codec, n), codecName(codec), " ", op, ": ", n, " values take ",
                   encodedBytes(codec, n), " bytes, but the byte tensor holds ", bytes.numel());
}

[[noreturn]] void throwNonFinite(PseudoGradientCodec codec, int64_t index, float value) {
  LOOM_THROW(InputError, codecName(codec), " encode: pseudo-gradient has a non-finite value at element ", index, ": ",
             value, "; a replica diverged; lower the inner lr");
}

// Throws on the first NaN or inf. Blocks of branch-free comparisons, so the
// common (all finite) case vectorizes.
void checkFinite(PseudoGradientCodec codec, const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = std::min(n, begin + kBlock);
    int bad = 0;
    for (int64_t i = begin; i < end; ++i) bad |= !(std::fabs(x[i]) <= std::numeric_limits<float>::max());
    if (!bad) continue;
    for (int64_t i = begin; i < end; ++i) {
      if (!std::isfinite(x[i])) throwNonFinite(codec, i, x[i]);
    }
  }
}

template <typename T>
void store(uint8_t* out, T value) {
  std::memcpy(out, &value, sizeof(T));
}

template <typename T>
T load(const uint8_t* in) {
  T value;
  std::memcpy(&value, in, sizeof(T));
  return value;
}

void encodeHalf(const float* x, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(x[i], -kHalfMax), kHalfMax);
    store<uint16_t>(out + 2 * i, c10::Half(v).x);
  }
}

void decodeHalf(const uint8_t* in, int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = c10::Half(load<uint16_t>(in + 2 * i), c10::Half::from_bits());
}

void encodeBFloat16(const float* x, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(x[i], -kBFloat16Max), kBFloat16Max);
    store<uint16_t>(out + 2 * i, c10::BFloat16(v).x);
  }
}

void decodeBFloat16(const uint8_t* in, int64_t n, float* x) {
  for (int64_t i = 0; i < n; ++i) x[i] = c10::BFloat16(load<uint16_t>(in + 2 * i), c10::BFloat16::from_bits());
}

// The 256 values a MinMax byte decodes to: min + q (max - min) / 255 in double,
// rounded once to fp32; the ends are min and max exactly. Non-decreasing in q.
void minMaxTable(float lo, float hi, float* table) {
  const double step = (static_cast<double>(hi) - lo) / (kBins - 1);
  for (int q = 0; q < kBins; ++q) table[q] = static_cast<float>(lo + q * step);
  table[0] = lo;
  table[kBins - 1] = hi;
}

void encodeMinMax(const float* x, int64_t n, uint8_t* out) {
  float lo = x[0];
  float hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  store<float>(out, lo);
  store<float>(out + sizeof(float), hi);
  uint8_t* q_out = out + kMinMaxHeaderBytes;
  if (hi == lo) {  // every value is lo, which byte 0 decodes to exactly
    std::memset(q_out, 0, n);
    return;
  }
  float table[kBins];
  minMaxTable(lo, hi, table);
  const double inv_step = (kBins - 1) / (static_cast<double>(hi) - lo);
  for (int64_t i = 0; i < n; ++i) {
    int q = std::min(static_cast<int>((static_cast<double>(x[i]) - lo) * inv_step), kBins - 1);
    // One step of correction against the decoder's own table absorbs the
    // rounding of the product, so table[q] <= x < table[q + 1] exactly.
    q -= (q > 0 && table[q] > x[i]);
    q += (q < kBins - 1 && table[q + 1] <= x[i]);
    q_out[i] = static_cast<uint8_t>(q);
  }
}

void decodeMinMax(const uint8_t* in, int64_t n, float* x) {
  float table[kBins];
  minMaxTable(load<float>(in), load<float>(in + sizeof(float)), table);
  const uint8_t* q = in + kMinMaxHeaderBytes;
  for (int64_t i = 0; i < n; ++i) x[i] = table[q[i]];
}

void encodeLut(PseudoGradientCodec codec, const float* x, int64_t n, uint8_t* out) {
  // sum(x^2) in double cannot overflow for finite fp32 values; a NaN or inf makes it non-finite.
  double sum_sq = 0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  if (!std::isfinite(sum_sq)) checkFinite(codec, x, n);
  const double sigma = n == 1 ? std::fabs(static_cast<double>(x[0])) : std::sqrt(sum_sq / static_cast<double>(n - 1));
  uint8_t* q_out = out + kLutHeaderBytes;
  float lut[kBins];
  if (sigma == 0) {  // every value is zero: bin 128, whose table entry is 0
    std::fill(lut, lut + kBins, 0.0f);
    std::memset(q_out, kBins / 2, n);
    std::memcpy(out, lut, kLutHeaderBytes);
    return;
  }
  const double scale = 6 * sigma / kBins;
  const double inv_scale = 1 / scale;
  double sums[kBins] = {};
  int64_t counts[kBins] = {};
  for (int64_t i = 0; i < n; ++i) {
    // q = clamp(round(x / scale) + 128, 0, 255), ties rounding up; the double
    // clamp keeps the int conversion in range.
    const double shifted = std::min(std::max(x[i] * inv_scale + (kBins / 2 + 0.5), 0.0), kBins - 0.5);
    const int q = static_cast<int>(shifted);
    q_out[i] = static_cast<uint8_t>(q);
    sums[q] += x[i];
    ++counts[q];
  }
  for (int j = 0; j < kBins; ++j) {
    lut[j] = counts[j] > 0 ? static_cast<float>(sums[j] / static_cast<double>(counts[j]))
                           : static_cast<float>((j - kBins / 2) * scale);
  }
  std::memcpy(out, lut, kLutHeaderBytes);
}

void decodeLut(const uint8_t* in, int64_t n, float* x) {
  float lut[kBins];
  std::memcpy(lut, in, kLutHeaderBytes);
  const uint8_t* q = in + kLutHeaderBytes;
  for (int64_t i = 0; i < n; ++i) x[i] = lut[q[i]];
}

}  // namespace

const char* codecName(PseudoGradientCodec codec) {
  switch (codec) {
    case PseudoGradientCodec::kFp32:
      return "fp32";
    case PseudoGradientCodec::kFp16:
      return "fp16";
    case PseudoGradientCodec::kBf16:
      return "bf16";
    case PseudoGradientCodec::kUint8MinMax:
      return "uint8_minmax";
    case PseudoGradientCodec::kUint8Lut:
      return "uint8_lut";
  }
  return "?";
}

int64_t encodedBytes(PseudoGradientCodec codec, int64_t n) {
  LOOM_CHECK_INPUT(n >= 0, codecName(codec), ": the value count (", n, ") must be >= 0");
  if (n == 0) return 0;
  switch (codec) {
    case PseudoGradientCodec::kFp32:
      return 4 * n;
    case PseudoGradientCodec::kFp16:
    case PseudoGradientCodec::kBf16:
      return 2 * n;
    case PseudoGradientCodec::kUint8MinMax:
      return kMinMaxHeaderBytes + n;
    case PseudoGradientCodec::kUint8Lut:
      return kLutHeaderBytes + n;
  }
  LOOM_THROW(InputError, "unknown pseudo-gradient codec ", static_cast<int>(codec));
}

void encode(PseudoGradientCodec codec, const at::Tensor& values, at::Tensor& bytes) {
  checkValues(codec, "encode", values);
  const int64_t n = values.numel();
  checkBytes(codec, "encode", bytes, n);
  if (n == 0) return;
  const float* x = values.data_ptr<float>();
  uint8_t* out = bytes.data_ptr<uint8_t>();
  if (codec != PseudoGradientCodec::kUint8Lut) checkFinite(codec, x, n);  // LUT checks within its sigma pass
  switch (codec) {
    case PseudoGradientCodec::kFp32:
      std::memcpy(out, x, n * sizeof(float));
      return;
    case PseudoGradientCodec::kFp16:
      encodeHalf(x, n, out);
      return;
    case PseudoGradientCodec::kBf16:
      encodeBFloat16(x, n, out);
      return;
    case PseudoGradientCodec::kUint8MinMax:
      encodeMinMax(x, n, out);
      return;
    case PseudoGradientCodec::kUint8Lut:
      encodeLut(codec, x, n, out);
      return;
  }
}

void decode(PseudoGradientCodec codec, const at::Tensor& bytes, at::Tensor& values) {
  checkValues(codec, "decode", values);
  const int64_t n = values.numel();
  checkBytes(codec, "decode", bytes, n);
  if (n == 0) return;
  const uint8_t* in = bytes.data_ptr<uint8_t>();
  float* x = values.data_ptr<float>();
  switch (codec) {
    case PseudoGradientCodec::kFp32:
      std::memcpy(x, in, n * sizeof(float));
      return;
    case PseudoGradientCodec::kFp16:
      decodeHalf(in, n, x);
      return;
    case PseudoGradientCodec::kBf16:
      decodeBFloat16(in, n, x);
      return;
    case PseudoGradientCodec::kUint8MinMax:
      decodeMinMax(in, n, x);
      return;
    case PseudoGradientCodec::kUint8Lut:
      decodeLut(in, n, x);
      return;
  }
}

}  // namespace loom::optim::outer
