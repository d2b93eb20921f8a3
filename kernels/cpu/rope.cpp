#include "kernels/cpu/rope.h"

#include "kernels/cpu/simd.h"
#include "kernels/cpu/simd_math.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace loom::kernels::cpu {
namespace {

using simd::kLanes;
using simd::load;
using simd::store;

// Elements one parallel task should at least touch (ATen's GRAIN_SIZE).
constexpr int64_t kMinElementsPerTask = 32768;

/// out_j = in_j * c_j + in_{j^1} * s_j over one head (n elements, n even).
template <typename T>
LOOM_ALWAYS_INLINE void rotateHead(const T* in, const T* c, const T* s, T* out, int64_t n) {
  int64_t j = 0;
  for (; j + kLanes<T> <= n; j += kLanes<T>) {
    const simd::Vec<T> v = load(in + j);
    store(out + j, v * load(c + j) + simd::swapPairs(v) * load(s + j));
  }
  for (; j < n; ++j) {
    out[j] = in[j] * c[j] + in[j ^ 1] * s[j];
  }
}

/// Rotates every head of the (b, t) rows bt_begin .. bt_end - 1 (bt = b * seq + t).
template <typename T>
LOOM_ALWAYS_INLINE void rotateRows(const T* in, const RopeLayout& layout, const T* expanded_cos,
                                   const T* expanded_sin, T* out, int64_t bt_begin, int64_t bt_end) {
  const int64_t hd = layout.head_dim;
  for (int64_t bt = bt_begin; bt < bt_end; ++bt) {
    const int64_t b = bt / layout.seq;
    const int64_t t = bt % layout.seq;
    const T* c = expanded_cos + t * hd;
    const T* s = expanded_sin + t * hd;
    for (int64_t h = 0; h < layout.heads; ++h) {
      rotateHead<T>(in + b * layout.batch_stride + t * layout.seq_stride + h * layout.head_stride, c, s,
                    out + (bt * layout.heads + h) * hd, hd);
    }
  }
}

// Multiversioned entry points (simd.h): one overload per dtype and clone target.
LOOM_CPU_CLONES void rotateRowsIsa(const float* in, const RopeLayout& layout, const float* expanded_cos,
                                   const float* expanded_sin, float* out, int64_t bt_begin, int64_t bt_end) {
  rotateRows(in, layout, expanded_cos, expanded_sin, out, bt_begin, bt_end);
}
LOOM_CPU_CLONES void rotateRowsIsa(const double* in, const RopeLayout& layout, const double* expanded_cos,
                                   const double* expanded_sin, double* out, int64_t bt_begin, int64_t bt_end) {
  rotateRows(in, layout, expanded_cos, expanded_sin, out, bt_begin, bt_end);
}

/// Rotates `in` by the tables' angles, or by their negatives when `inverse`.
template <typename T>
void rotate(const T* in, const RopeLayout& layout, const T* cos, const T* sin, T* out, bool inverse) {
  const int64_t seq = layout.seq;
  const int64_t hd = layout.head_dim;
  const int64_t pairs = hd / 2;
  if (layout.batch * seq * layout.heads * hd == 0) {
    return;
  }
  // [seq, hd] each: cos per element, and sin signed for the element's role in its pair.
  std::vector<T> expanded(2 * seq * hd);
  T* expanded_cos = expanded.data();
  T* expanded_sin = expanded.data() + seq * hd;
  const T first_sign = inverse ? T(1) : T(-1);
  at::parallel_for(0, seq, std::max<int64_t>(1, kMinElementsPerTask / hd), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t i = 0; i < pairs; ++i) {
        const T c = cos[t * pairs + i];
        const T s = sin[t * pairs + i];
        expanded_cos[t * hd + 2 * i] = c;
        expanded_cos[t * hd + 2 * i + 1] = c;
        expanded_sin[t * hd + 2 * i] = first_sign * s;
        expanded_sin[t * hd + 2 * i + 1] = -first_sign * s;
      }
    }
  });
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / (layout.heads * hd));
  at::parallel_for(0, layout.batch * seq, grain, [&](int64_t begin, int64_t end) {
    rotateRowsIsa(in, layout, expanded_cos, expanded_sin, out, begin, end);
  });
}

}  // namespace

template <typename T>
void ropeForward(const T* x, const RopeLayout& x_layout, const T* cos, const T* sin, T* y) {
  rotate<T>(x, x_layout, cos, sin, y, /*inverse=*/false);
}

template <typename T>
void ropeBackward(const T* dy, const RopeLayout& dy_layout, const T* cos, const T* sin, T* dx) {
  rotate<T>(dy, dy_layout, cos, sin, dx, /*inverse=*/true);
}

template void ropeForward<float>(const float*, const RopeLayout&, const float*, const float*, float*);
template void ropeForward<double>(const double*, const RopeLayout&, const double*, const double*, double*);
template void ropeBackward<float>(const float*, const RopeLayout&, const float*, const float*, float*);
template void ropeBackward<double>(const double*, const RopeLayout&, const double*, const double*, double*);

}  // namespace loom::kernels::cpu
