// Vector math on simd::Vec beyond simd.h: lane masks and select, partial loads and
// stores for row tails, pairwise lane swaps, and exp over non-positive arguments.
//
// exp trick (Cephes): with n = round(x / ln 2) and r = x - n ln 2 (ln 2 split in a
// short high part and a correction, so n * hi is exact), |r| <= ln(2) / 2 and
// exp(x) = 2^n exp(r). n is rounded by adding 1.5 * 2^m (m = mantissa bits): the
// low bits of the sum's bit pattern are then n itself, so no float->int conversion
// is needed, and 2^n is built by writing n + bias into the exponent field.
// exp(r) is a degree-5 minimax polynomial for float and the degree-13 Taylor
// polynomial for double; the result's relative error, rounding included, is below
// 1e-7 for float and 2e-16 for double (measured 8.4e-8 and 1.9e-16 over [ln(min), 0]).
//
// Only arguments <= 0 are supported: every loom caller can arrange that (softmax
// subtracts the row max, sigmoid uses exp(-|g|)), and it keeps 2^n inside the normal
// range without the overflow handling a general exp needs. Fallback at the bottom:
// x below ln(smallest normal), about -87.34 for float and -708.4 for double, gives
// exactly 0 instead of a subnormal result (an absolute error below 1.2e-38 and
// 2.3e-308 respectively). -inf gives 0, NaN gives NaN.
//
// Every function but swapPairs is lane-wise: a lane's result depends only on that
// lane's input, never on its neighbours or on which loop (main or tail) computed it.
#pragma once

#include "kernels/cpu/simd.h"

#include <cstdint>
#include <cstring>

namespace loom::kernels::cpu::simd {

template <typename T>
struct MaskOf;
template <>
struct MaskOf<float> {
  using Lane = int32_t;
  typedef int32_t type __attribute__((vector_size(32)));
  typedef uint32_t unsigned_type __attribute__((vector_size(32)));
};
template <>
struct MaskOf<double> {
  using Lane = int64_t;
  typedef int64_t type __attribute__((vector_size(32)));
  typedef uint64_t unsigned_type __attribute__((vector_size(32)));
};

/// Integer lanes as wide as T's: comparison results (all bits set = true).
template <typename T>
using Mask = typename MaskOf<T>::type;
/// The same lanes unsigned, for bit-pattern arithmetic (wraps instead of overflowing).
template <typename T>
using Bits = typename MaskOf<T>::unsigned_type;

/// Reinterprets the bits (GCC/Clang vector casts between equal sizes are bit casts).
template <typename T>
LOOM_ALWAYS_INLINE Bits<T> unsignedBits(const Vec<T>& v) {
  return (Bits<T>)v;
}

template <typename T>
LOOM_ALWAYS_INLINE Mask<T> lessThan(const Vec<T>& a, const Vec<T>& b) {
  return (Mask<T>)(a < b);
}

/// mask ? a : b, lane-wise (a blend; mask lanes are all ones or all zeros).
template <typename T>
LOOM_ALWAYS_INLINE Vec<T> select(const Mask<T>& mask, const Vec<T>& a, const Vec<T>& b) {
  return mask ? a : b;
}

/// Lane-wise max (one vmaxps/maxps): b where a < b, else a, so a NaN in b is dropped.
template <typename T>
LOOM_ALWAYS_INLINE Vec<T> max(const Vec<T>& a, const Vec<T>& b) {
  return a < b ? b : a;
}

/// Lanes k < count are true.
template <typename T>
LOOM_ALWAYS_INLINE Mask<T> firstLanes(int64_t count) {
  Mask<T> lane_index;
  for (int64_t k = 0; k < kLanes<T>; ++k) {
    lane_index[k] = k;
  }
  return lane_index < static_cast<typename MaskOf<T>::Lane>(count);
}

/// Lanes 0 .. count-1 from p, the rest `fill`. REQUIRES 0 <= count <= kLanes<T>.
template <typename T>
LOOM_ALWAYS_INLINE Vec<T> loadPartial(const T* p, int64_t count, T fill) {
  Vec<T> v = broadcast<T>(fill);
  std::memcpy(&v, p, sizeof(T) * count);
  return v;
}

/// Writes lanes 0 .. count-1 of v to p. REQUIRES 0 <= count <= kLanes<T>.
template <typename T>
LOOM_ALWAYS_INLINE void storePartial(T* p, const Vec<T>& v, int64_t count) {
  std::memcpy(p, &v, sizeof(T) * count);
}

/// Lanes (0,1), (2,3), ... exchanged.
LOOM_ALWAYS_INLINE Vec<float> swapPairs(const Vec<float>& v) {
  return __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
}
LOOM_ALWAYS_INLINE Vec<double> swapPairs(const Vec<double>& v) {
  return __builtin_shufflevector(v, v, 1, 0, 3, 2);
}

/// exp(x) for x <= 0 (see the header comment for accuracy and the flush to zero).
LOOM_ALWAYS_INLINE Vec<float> expNonPositive(const Vec<float>& x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 8 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  constexpr float kMinArg = -87.3365447f;  // ln(FLT_MIN): 2^n stays normal above it
  const Vec<float> clamped = max<float>(x, broadcast<float>(kMinArg));  // keeps n in [-126, 0]
  const Vec<float> shifted = clamped * kLog2e + kRound;
  const Vec<float> n = shifted - kRound;
  const Vec<float> r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  Vec<float> p = broadcast<float>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const Vec<float> exp_r = p * (r * r) + r + 1.0f;
  const Bits<float> n_bits = unsignedBits<float>(shifted) - unsignedBits<float>(broadcast<float>(kRound));
  const Vec<float> two_to_n = (Vec<float>)((n_bits + 127u) << 23);
  return select<float>(lessThan<float>(x, broadcast<float>(kMinArg)), Vec<float>{}, exp_r * two_to_n);
}

LOOM_ALWAYS_INLINE Vec<double> expNonPositive(const Vec<double>& x) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93145751953125e-1;  // 20 significant bits: n * kLn2Hi is exact
  constexpr double kLn2Lo = 1.42860682030941723212e-6;
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  constexpr double kMinArg = -708.396418532264106;  // ln(DBL_MIN)
  const Vec<double> clamped = max<double>(x, broadcast<double>(kMinArg));  // keeps n in [-1022, 0]
  const Vec<double> shifted = clamped * kLog2e + kRound;
  const Vec<double> n = shifted - kRound;
  const Vec<double> r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  // sum_{k <= 13} r^k / k!, by Horner from the highest term.
  Vec<double> p = broadcast<double>(1.0 / 6227020800.0);
  constexpr double kFactorials[] = {479001600.0, 39916800.0, 3628800.0, 362880.0, 40320.0, 5040.0,
                                    720.0,       120.0,      24.0,      6.0,      2.0,     1.0,    1.0};
  for (double factorial : kFactorials) {
    p = p * r + 1.0 / factorial;
  }
  const Bits<double> n_bits = unsignedBits<double>(shifted) - unsignedBits<double>(broadcast<double>(kRound));
  const Vec<double> two_to_n = (Vec<double>)((n_bits + 1023u) << 52);
  return select<double>(lessThan<double>(x, broadcast<double>(kMinArg)), Vec<double>{}, p * two_to_n);
}

}  // namespace loom::kernels::cpu::simd
