// Portable SIMD building blocks for loom's CPU kernels: 32-byte GCC/Clang vector
// types, unaligned loads/stores, and the multiversioning attribute.
//
// Kernels write their loops once as templates over Vec<T> (force-inlined helpers
// below), then expose non-template entry points marked LOOM_CPU_CLONES. The
// compiler emits one copy of each entry point per listed target and an ifunc
// resolver that picks the best one for the running CPU when the library loads, so
// the binary stays portable (no -march=native) yet uses AVX2+FMA where present.
// On the baseline target a 32-byte vector is simply split into two SSE halves.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LOOM_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LOOM_CPU_CLONES
#endif

#define LOOM_ALWAYS_INLINE inline __attribute__((always_inline))

// GCC warns (-Wpsabi) that passing a 32-byte vector by value differs between the AVX
// and the baseline calling conventions. Every function here and in the kernels that
// takes or returns a Vec is force-inlined and internal to one translation unit, so
// no such call exists at runtime and the warning cannot apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace loom::kernels::cpu::simd {

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};

/// A 32-byte vector of T; arithmetic is lane-wise, so its results do not depend on
/// the instruction set that executes it (barring FMA contraction).
template <typename T>
using Vec = typename VecOf<T>::type;

/// Lanes in a Vec<T>.
template <typename T>
constexpr int64_t kLanes = static_cast<int64_t>(32 / sizeof(T));

template <typename T>
LOOM_ALWAYS_INLINE Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
LOOM_ALWAYS_INLINE void store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
LOOM_ALWAYS_INLINE Vec<T> broadcast(T value) {
  return Vec<T>{} + value;
}

/// Lane 0 + lane 1 + ... in a fixed order.
template <typename T>
LOOM_ALWAYS_INLINE T horizontalSum(const Vec<T>& v) {
  T sum = 0;
  for (int64_t k = 0; k < kLanes<T>; ++k) {
    sum += v[k];
  }
  return sum;
}

}  // namespace loom::kernels::cpu::simd
