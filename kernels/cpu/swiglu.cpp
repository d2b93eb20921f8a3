#include "kernels/cpu/swiglu.h"

#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_math.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace loom::kernels::cpu {
namespace {

using simd::kLanes;
using simd::load;
using simd::loadPartial;
using simd::Mask;
using simd::select;
using simd::store;
using simd::storePartial;
using simd::Vec;

// Elements per block: parallel tasks start on block boundaries, a multiple of every
// lane count, so which elements share a vector never depends on the thread count.
constexpr int64_t kBlockElements = 2048;
// Elements one parallel task should at least touch (ATen's GRAIN_SIZE).
constexpr int64_t kMinElementsPerTask = 32768;

/// sigmoid(g) without overflow: e = exp(-|g|) <= 1, then 1/(1+e) or e/(1+e).
template <typename T>
LOOM_ALWAYS_INLINE Vec<T> sigmoid(const Vec<T>& g) {
  const Mask<T> negative = simd::lessThan<T>(g, Vec<T>{});
  const Vec<T> e = simd::expNonPositive(select<T>(negative, g, -g));
  const Vec<T> inv = T(1) / (T(1) + e);
  return select<T>(negative, e * inv, inv);
}

template <typename T>
LOOM_ALWAYS_INLINE Vec<T> forwardVec(const Vec<T>& g, const Vec<T>& u) {
  return g * sigmoid<T>(g) * u;
}

template <typename T>
LOOM_ALWAYS_INLINE void forwardRange(const T* gate, const T* up, T* y, int64_t begin, int64_t end) {
  int64_t j = begin;
  for (; j + kLanes<T> <= end; j += kLanes<T>) {
    store(y + j, forwardVec<T>(load(gate + j), load(up + j)));
  }
  if (j < end) {  // the same vector code on a zero-padded vector
    const int64_t count = end - j;
    storePartial(y + j, forwardVec<T>(loadPartial(gate + j, count, T(0)), loadPartial(up + j, count, T(0))), count);
  }
}

template <typename T>
LOOM_ALWAYS_INLINE void backwardVec(const Vec<T>& d, const Vec<T>& g, const Vec<T>& u, Vec<T>& dg, Vec<T>& du) {
  const Vec<T> s = sigmoid<T>(g);
  du = d * (g * s);
  dg = d * u * s * (T(1) + g * (T(1) - s));
}

template <typename T>
LOOM_ALWAYS_INLINE void backwardRange(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t begin,
                                      int64_t end) {
  Vec<T> dg;
  Vec<T> du;
  int64_t j = begin;
  for (; j + kLanes<T> <= end; j += kLanes<T>) {
    backwardVec<T>(load(dy + j), load(gate + j), load(up + j), dg, du);
    if (dgate != nullptr) {
      store(dgate + j, dg);
    }
    if (dup != nullptr) {
      store(dup + j, du);
    }
  }
  if (j < end) {
    const int64_t count = end - j;
    backwardVec<T>(loadPartial(dy + j, count, T(0)), loadPartial(gate + j, count, T(0)),
                   loadPartial(up + j, count, T(0)), dg, du);
    if (dgate != nullptr) {
      storePartial(dgate + j, dg, count);
    }
    if (dup != nullptr) {
      storePartial(dup + j, du, count);
    }
  }
}

// Multiversioned entry points (simd.h): one overload per dtype and clone target.
LOOM_CPU_CLONES void forwardRangeIsa(const float* gate, const float* up, float* y, int64_t begin, int64_t end) {
  forwardRange(gate, up, y, begin, end);
}
LOOM_CPU_CLONES void forwardRangeIsa(const double* gate, const double* up, double* y, int64_t begin, int64_t end) {
  forwardRange(gate, up, y, begin, end);
}
LOOM_CPU_CLONES void backwardRangeIsa(const float* dy, const float* gate, const float* up, float* dgate, float* dup,
                                      int64_t begin, int64_t end) {
  backwardRange(dy, gate, up, dgate, dup, begin, end);
}
LOOM_CPU_CLONES void backwardRangeIsa(const double* dy, const double* gate, const double* up, double* dgate,
                                      double* dup, int64_t begin, int64_t end) {
  backwardRange(dy, gate, up, dgate, dup, begin, end);
}

/// Calls fn(begin, end) over [0, n) in tasks that start and end on block boundaries.
template <typename Fn>
void parallelBlocks(int64_t n, const Fn& fn) {
  const int64_t blocks = (n + kBlockElements - 1) / kBlockElements;
  at::parallel_for(0, blocks, kMinElementsPerTask / kBlockElements, [&](int64_t b0, int64_t b1) {
    fn(b0 * kBlockElements, std::min(n, b1 * kBlockElements));
  });
}

}  // namespace

template <typename T>
void swigluForward(const T* gate, const T* up, T* y, int64_t n) {
  parallelBlocks(n, [&](int64_t begin, int64_t end) { forwardRangeIsa(gate, up, y, begin, end); });
}

template <typename T>
void swigluBackward(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n) {
  if (dgate == nullptr && dup == nullptr) {
    return;
  }
  parallelBlocks(n, [&](int64_t begin, int64_t end) { backwardRangeIsa(dy, gate, up, dgate, dup, begin, end); });
}

template void swigluForward<float>(const float*, const float*, float*, int64_t);
template void swigluForward<double>(const double*, const double*, double*, int64_t);
template void swigluBackward<float>(const float*, const float*, const float*, float*, float*, int64_t);
template void swigluBackward<double>(const double*, const double*, const double*, double*, double*, int64_t);

}  // namespace loom::kernels::cpu
