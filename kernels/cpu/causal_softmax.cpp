#include "kernels/cpu/causal_softmax.h"

#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_math.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>

namespace loom::kernels::cpu {
namespace {

using simd::broadcast;
using simd::kLanes;
using simd::load;
using simd::store;
using simd::Vec;

// Independent vector accumulators per sum: enough to hide the add latency.
constexpr int64_t kAccumulators = 4;
// Elements one parallel task should at least touch (ATen's GRAIN_SIZE).
constexpr int64_t kMinElementsPerTask = 32768;

/// max_{j < len} scale * s_j; rounding is monotonic, so the order does not matter.
template <typename T>
LOOM_ALWAYS_INLINE T scaledMax(const T* s, int64_t len, T scale) {
  constexpr int64_t kStep = kAccumulators * kLanes<T>;
  Vec<T> accs[kAccumulators];
  for (Vec<T>& a : accs) {
    a = broadcast<T>(-std::numeric_limits<T>::infinity());
  }
  int64_t j = 0;
  for (; j + kStep <= len; j += kStep) {
    for (int64_t a = 0; a < kAccumulators; ++a) {
      accs[a] = simd::max<T>(accs[a], scale * load(s + j + a * kLanes<T>));
    }
  }
  for (; j + kLanes<T> <= len; j += kLanes<T>) {
    accs[0] = simd::max<T>(accs[0], scale * load(s + j));
  }
  if (j < len && len >= kLanes<T>) {  // the last whole vector again: max is idempotent
    accs[0] = simd::max<T>(accs[0], scale * load(s + len - kLanes<T>));
    j = len;
  }
  const Vec<T> acc = simd::max<T>(simd::max<T>(accs[0], accs[1]), simd::max<T>(accs[2], accs[3]));
  T m = acc[0];
  for (int64_t k = 1; k < kLanes<T>; ++k) {
    m = std::max(m, acc[k]);
  }
  for (; j < len; ++j) {
    m = std::max(m, scale * s[j]);
  }
  return m;
}

/// Writes e_j = exp(scale * s_j - m) to p for j < len and returns their sum, formed
/// in kAccumulators vector partials (then the tail vector, then pairwise): an order
/// fixed by len. The tail is the row's last whole vector again, its lanes already
/// done masked out of the sum (rows shorter than a vector go through a zero-padded
/// copy instead), so no partial loads in the common case and nothing past len read.
template <typename T>
LOOM_ALWAYS_INLINE T expAndSum(const T* s, T* p, int64_t len, T scale, T m) {
  constexpr int64_t kStep = kAccumulators * kLanes<T>;
  Vec<T> acc[kAccumulators] = {};
  int64_t j = 0;
  for (; j + kStep <= len; j += kStep) {
    for (int64_t a = 0; a < kAccumulators; ++a) {
      const Vec<T> e = simd::expNonPositive(scale * load(s + j + a * kLanes<T>) - m);
      store(p + j + a * kLanes<T>, e);
      acc[a] += e;
    }
  }
  for (; j + kLanes<T> <= len; j += kLanes<T>) {
    const Vec<T> e = simd::expNonPositive(scale * load(s + j) - m);
    store(p + j, e);
    acc[0] += e;
  }
  if (j < len && len >= kLanes<T>) {
    const int64_t start = len - kLanes<T>;
    const Vec<T> e = simd::expNonPositive(scale * load(s + start) - m);
    store(p + start, e);  // rewrites the lanes before j with the values they hold
    acc[0] += simd::select<T>(simd::firstLanes<T>(j - start), Vec<T>{}, e);
  } else if (j < len) {  // lanes past len get exp(-inf) = 0
    const int64_t count = len - j;
    const Vec<T> arg = scale * simd::loadPartial(s + j, count, T(0)) - m;
    const Vec<T> e = simd::expNonPositive(
        simd::select<T>(simd::firstLanes<T>(count), arg, broadcast<T>(-std::numeric_limits<T>::infinity())));
    simd::storePartial(p + j, e, count);
    acc[0] += e;
  }
  static_assert(kAccumulators == 4, "the pairwise combination below assumes 4 accumulators");
  return simd::horizontalSum<T>((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

/// sum_{j < len} a_j * b_j in the same fixed order as expAndSum (scalar tail).
template <typename T>
LOOM_ALWAYS_INLINE T dot(const T* a, const T* b, int64_t len) {
  constexpr int64_t kStep = kAccumulators * kLanes<T>;
  Vec<T> acc[kAccumulators] = {};
  int64_t j = 0;
  for (; j + kStep <= len; j += kStep) {
    for (int64_t k = 0; k < kAccumulators; ++k) {
      acc[k] += load(a + j + k * kLanes<T>) * load(b + j + k * kLanes<T>);
    }
  }
  for (; j + kLanes<T> <= len; j += kLanes<T>) {
    acc[0] += load(a + j) * load(b + j);
  }
  T sum = simd::horizontalSum<T>((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; j < len; ++j) {
    sum += a[j] * b[j];
  }
  return sum;
}

/// Allowed keys of row `row` (of all matrices' rows): query q = row % q_len sees keys
/// 0 .. q + k_len - q_len.
LOOM_ALWAYS_INLINE int64_t allowedKeys(int64_t row, int64_t q_len, int64_t k_len) {
  return row % q_len + k_len - q_len + 1;
}

template <typename T>
LOOM_ALWAYS_INLINE void forwardRows(const T* scores, T* probs, int64_t begin, int64_t end, int64_t q_len,
                                    int64_t k_len, double scale) {
  const T scale_t = static_cast<T>(scale);
  for (int64_t row = begin; row < end; ++row) {
    const T* s = scores + row * k_len;
    T* p = probs + row * k_len;
    const int64_t len = allowedKeys(row, q_len, k_len);
    const T m = scaledMax<T>(s, len, scale_t);
    const T inv_sum = T(1) / expAndSum<T>(s, p, len, scale_t, m);
    int64_t j = 0;
    for (; j + kLanes<T> <= len; j += kLanes<T>) {
      store(p + j, load(p + j) * inv_sum);
    }
    for (; j < len; ++j) {
      p[j] *= inv_sum;
    }
    std::fill(p + len, p + k_len, T(0));
  }
}

template <typename T>
LOOM_ALWAYS_INLINE void backwardRows(const T* dprobs, const T* probs, T* dscores, int64_t begin, int64_t end,
                                     int64_t q_len, int64_t k_len, double scale) {
  const T scale_t = static_cast<T>(scale);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t offset = row * k_len;
    const T* dp = dprobs + offset;
    const T* p = probs + offset;
    T* ds = dscores + offset;
    const int64_t len = allowedKeys(row, q_len, k_len);
    const T weighted = dot<T>(dp, p, len);
    int64_t j = 0;
    for (; j + kLanes<T> <= len; j += kLanes<T>) {
      store(ds + j, (scale_t * load(p + j)) * (load(dp + j) - weighted));
    }
    for (; j < len; ++j) {
      ds[j] = (scale_t * p[j]) * (dp[j] - weighted);
    }
    std::fill(ds + len, ds + k_len, T(0));
  }
}

// Multiversioned entry points (simd.h): one overload per dtype and clone target.
LOOM_CPU_CLONES void forwardRowsIsa(const float* scores, float* probs, int64_t begin, int64_t end, int64_t q_len,
                                    int64_t k_len, double scale) {
  forwardRows(scores, probs, begin, end, q_len, k_len, scale);
}
LOOM_CPU_CLONES void forwardRowsIsa(const double* scores, double* probs, int64_t begin, int64_t end, int64_t q_len,
                                    int64_t k_len, double scale) {
  forwardRows(scores, probs, begin, end, q_len, k_len, scale);
}
LOOM_CPU_CLONES void backwardRowsIsa(const float* dprobs, const float* probs, float* dscores, int64_t begin,
                                     int64_t end, int64_t q_len, int64_t k_len, double scale) {
  backwardRows(dprobs, probs, dscores, begin, end, q_len, k_len, scale);
}
LOOM_CPU_CLONES void backwardRowsIsa(const double* dprobs, const double* probs, double* dscores, int64_t begin,
                                     int64_t end, int64_t q_len, int64_t k_len, double scale) {
  backwardRows(dprobs, probs, dscores, begin, end, q_len, k_len, scale);
}

/// Rows per parallel task so that a task touches at least kMinElementsPerTask elements.
int64_t grainRows(int64_t k_len) {
  return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(k_len, 1));
}

}  // namespace

template <typename T>
void causalSoftmaxForward(const T* scores, T* probs, int64_t matrices, int64_t q_len, int64_t k_len, double scale) {
  at::parallel_for(0, matrices * q_len, grainRows(k_len), [&](int64_t begin, int64_t end) {
    forwardRowsIsa(scores, probs, begin, end, q_len, k_len, scale);
  });
}

template <typename T>
void causalSoftmaxBackward(const T* dprobs, const T* probs, T* dscores, int64_t matrices, int64_t q_len,
                           int64_t k_len, double scale) {
  at::parallel_for(0, matrices * q_len, grainRows(k_len), [&](int64_t begin, int64_t end) {
    backwardRowsIsa(dprobs, probs, dscores, begin, end, q_len, k_len, scale);
  });
}

template void causalSoftmaxForward<float>(const float*, float*, int64_t, int64_t, int64_t, double);
template void causalSoftmaxForward<double>(const double*, double*, int64_t, int64_t, int64_t, double);
template void causalSoftmaxBackward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, double);
template void causalSoftmaxBackward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, double);

}  // namespace loom::kernels::cpu
