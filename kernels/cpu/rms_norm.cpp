#include "kernels/cpu/rms_norm.h"

#include "kernels/cpu/simd.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace loom::kernels::cpu {
namespace {

using simd::kLanes;
using simd::load;
using simd::store;
using simd::Vec;

// Independent vector accumulators per reduction: enough to hide the add latency.
constexpr int64_t kAccumulators = 4;
// dweight's row blocks: at most kMaxRowBlocks partials (bounds the scratch memory and
// the parallelism), each of at least kMinRowsPerBlock rows. Both depend on `rows`
// only, which is what makes dweight independent of the thread count.
constexpr int64_t kMaxRowBlocks = 64;
constexpr int64_t kMinRowsPerBlock = 8;
// Elements one parallel task should at least touch (ATen's own GRAIN_SIZE): below it,
// waking threads costs more than it saves.
constexpr int64_t kMinElementsPerTask = 32768;

/// sum over j < n of term(j), with kAccumulators vector partials added pairwise,
/// then the scalar tail. A term provides vec(j) (lanes j..j+L-1) and scalar(j).
template <typename T, typename Term>
LOOM_ALWAYS_INLINE T reduceSum(int64_t n, const Term& term) {
  constexpr int64_t kStep = kAccumulators * kLanes<T>;
  Vec<T> acc[kAccumulators] = {};
  int64_t j = 0;
  for (; j + kStep <= n; j += kStep) {
    for (int64_t a = 0; a < kAccumulators; ++a) {
      acc[a] += term.vec(j + a * kLanes<T>);
    }
  }
  for (; j + kLanes<T> <= n; j += kLanes<T>) {
    acc[0] += term.vec(j);
  }
  static_assert(kAccumulators == 4, "the pairwise combination below assumes 4 accumulators");
  T sum = simd::horizontalSum<T>((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; j < n; ++j) {
    sum += term.scalar(j);
  }
  return sum;
}

/// Runs op.vec(j) over whole vectors, then op.scalar(j) over the tail.
template <typename T, typename Op>
LOOM_ALWAYS_INLINE void forEach(int64_t n, const Op& op) {
  int64_t j = 0;
  for (; j + kLanes<T> <= n; j += kLanes<T>) {
    op.vec(j);
  }
  for (; j < n; ++j) {
    op.scalar(j);
  }
}

template <typename T>
struct SquareTerm {
  const T* x;
  LOOM_ALWAYS_INLINE Vec<T> vec(int64_t j) const {
    Vec<T> v = load(x + j);
    return v * v;
  }
  LOOM_ALWAYS_INLINE T scalar(int64_t j) const { return x[j] * x[j]; }
};

/// Writes out = x + residual while summing out^2: the fused op reads its inputs once.
template <typename T>
struct AddSquareTerm {
  const T* x;
  const T* residual;
  T* out;
  LOOM_ALWAYS_INLINE Vec<T> vec(int64_t j) const {
    Vec<T> v = load(x + j) + load(residual + j);
    store(out + j, v);
    return v * v;
  }
  LOOM_ALWAYS_INLINE T scalar(int64_t j) const {
    out[j] = x[j] + residual[j];
    return out[j] * out[j];
  }
};

/// dy_j * w_j * x_j, i.e. sum(g * xh) / r.
template <typename T>
struct GradDotTerm {
  const T* dy;
  const T* w;
  const T* x;
  LOOM_ALWAYS_INLINE Vec<T> vec(int64_t j) const { return load(dy + j) * load(w + j) * load(x + j); }
  LOOM_ALWAYS_INLINE T scalar(int64_t j) const { return dy[j] * w[j] * x[j]; }
};

/// y_j = (x_j * r) * w_j
template <typename T>
struct NormalizeOp {
  const T* x;
  const T* w;
  T* y;
  T r;
  LOOM_ALWAYS_INLINE void vec(int64_t j) const { store(y + j, load(x + j) * r * load(w + j)); }
  LOOM_ALWAYS_INLINE void scalar(int64_t j) const { y[j] = x[j] * r * w[j]; }
};

/// dx_j = r * dy_j * w_j - x_j * k (+ dres_j), with k = r^3 * sum(dy*w*x) / n, which is
/// r * xh_j * mean(g * xh) rearranged. dw_partial (if set) += dy_j * (x_j * r).
template <typename T>
struct BackwardOp {
  const T* dy;
  const T* dres;  // nullable
  const T* x;
  const T* w;
  T* dx;
  T* dw_partial;  // nullable
  T r;
  T k;
  LOOM_ALWAYS_INLINE void vec(int64_t j) const {
    Vec<T> d = load(dy + j);
    Vec<T> xv = load(x + j);
    Vec<T> g = r * d * load(w + j) - xv * k;
    if (dres != nullptr) {
      g += load(dres + j);
    }
    store(dx + j, g);
    if (dw_partial != nullptr) {
      store(dw_partial + j, load(dw_partial + j) + d * (xv * r));
    }
  }
  LOOM_ALWAYS_INLINE void scalar(int64_t j) const {
    T g = r * dy[j] * w[j] - x[j] * k;
    dx[j] = dres != nullptr ? g + dres[j] : g;
    if (dw_partial != nullptr) {
      dw_partial[j] += dy[j] * (x[j] * r);
    }
  }
};

/// out_j += in_j
template <typename T>
struct AccumulateOp {
  const T* in;
  T* out;
  LOOM_ALWAYS_INLINE void vec(int64_t j) const { store(out + j, load(out + j) + load(in + j)); }
  LOOM_ALWAYS_INLINE void scalar(int64_t j) const { out[j] += in[j]; }
};

template <typename T>
LOOM_ALWAYS_INLINE void forwardRows(const T* x, const T* residual, const T* w, T* y, T* residual_out, T* rstd,
                                    int64_t begin, int64_t end, int64_t cols, double eps) {
  for (int64_t i = begin; i < end; ++i) {
    const T* src = x + i * cols;
    T sum_sq;
    if (residual != nullptr) {
      T* out = residual_out + i * cols;
      sum_sq = reduceSum<T>(cols, AddSquareTerm<T>{src, residual + i * cols, out});
      src = out;
    } else {
      sum_sq = reduceSum<T>(cols, SquareTerm<T>{src});
    }
    T r = T(1) / std::sqrt(sum_sq / static_cast<T>(cols) + static_cast<T>(eps));
    rstd[i] = r;
    forEach<T>(cols, NormalizeOp<T>{src, w, y + i * cols, r});
  }
}

/// dx for rows [begin, end); dw_partial (nullable, zeroed by the caller) accumulates
/// the block's rows in row order.
template <typename T>
LOOM_ALWAYS_INLINE void backwardRows(const T* dy, const T* dres, const T* x, const T* w, const T* rstd, T* dx,
                                     T* dw_partial, int64_t begin, int64_t end, int64_t cols) {
  for (int64_t i = begin; i < end; ++i) {
    const int64_t offset = i * cols;
    const T r = rstd[i];
    const T dot = reduceSum<T>(cols, GradDotTerm<T>{dy + offset, w, x + offset});
    const T k = r * r * r * dot / static_cast<T>(cols);
    forEach<T>(cols, BackwardOp<T>{dy + offset, dres != nullptr ? dres + offset : nullptr, x + offset, w, dx + offset,
                                   dw_partial, r, k});
  }
}

/// dw[c] = sum over b of partials[b * cols + c], b ascending, for c in [begin, end).
template <typename T>
LOOM_ALWAYS_INLINE void sumPartials(const T* partials, int64_t blocks, T* dw, int64_t begin, int64_t end,
                                    int64_t cols) {
  std::copy(partials + begin, partials + end, dw + begin);
  for (int64_t b = 1; b < blocks; ++b) {
    forEach<T>(end - begin, AccumulateOp<T>{partials + b * cols + begin, dw + begin});
  }
}

// The multiversioned entry points (see simd.h): one overload per dtype, each a
// clone target, each calling the force-inlined template so it is compiled per ISA.
LOOM_CPU_CLONES void forwardRowsIsa(const float* x, const float* residual, const float* w, float* y,
                                    float* residual_out, float* rstd, int64_t begin, int64_t end, int64_t cols,
                                    double eps) {
  forwardRows(x, residual, w, y, residual_out, rstd, begin, end, cols, eps);
}
LOOM_CPU_CLONES void forwardRowsIsa(const double* x, const double* residual, const double* w, double* y,
                                    double* residual_out, double* rstd, int64_t begin, int64_t end, int64_t cols,
                                    double eps) {
  forwardRows(x, residual, w, y, residual_out, rstd, begin, end, cols, eps);
}
LOOM_CPU_CLONES void backwardRowsIsa(const float* dy, const float* dres, const float* x, const float* w,
                                     const float* rstd, float* dx, float* dw_partial, int64_t begin, int64_t end,
                                     int64_t cols) {
  backwardRows(dy, dres, x, w, rstd, dx, dw_partial, begin, end, cols);
}
LOOM_CPU_CLONES void backwardRowsIsa(const double* dy, const double* dres, const double* x, const double* w,
                                     const double* rstd, double* dx, double* dw_partial, int64_t begin, int64_t end,
                                     int64_t cols) {
  backwardRows(dy, dres, x, w, rstd, dx, dw_partial, begin, end, cols);
}
LOOM_CPU_CLONES void sumPartialsIsa(const float* partials, int64_t blocks, float* dw, int64_t begin, int64_t end,
                                    int64_t cols) {
  sumPartials(partials, blocks, dw, begin, end, cols);
}
LOOM_CPU_CLONES void sumPartialsIsa(const double* partials, int64_t blocks, double* dw, int64_t begin, int64_t end,
                                    int64_t cols) {
  sumPartials(partials, blocks, dw, begin, end, cols);
}

/// Items (of rows_per_item rows each) per parallel task, so that a task touches at
/// least kMinElementsPerTask elements: small problems stay on the calling thread.
int64_t grainRows(int64_t cols, int64_t rows_per_item = 1) {
  return std::max<int64_t>(1, kMinElementsPerTask / (cols * rows_per_item));
}

template <typename T>
void forwardImpl(const T* x, const T* residual, const T* w, T* y, T* residual_out, T* rstd, int64_t rows, int64_t cols,
                 double eps) {
  at::parallel_for(0, rows, grainRows(cols), [&](int64_t begin, int64_t end) {
    forwardRowsIsa(x, residual, w, y, residual_out, rstd, begin, end, cols, eps);
  });
}

template <typename T>
void backwardImpl(const T* dy, const T* dres, const T* x, const T* w, const T* rstd, T* dx, T* dw, int64_t rows,
                  int64_t cols) {
  const int64_t rows_per_block = std::max(kMinRowsPerBlock, (rows + kMaxRowBlocks - 1) / kMaxRowBlocks);
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  std::vector<T> partials(dw != nullptr ? blocks * cols : 0, T(0));
  at::parallel_for(0, blocks, grainRows(cols, rows_per_block), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      backwardRowsIsa(dy, dres, x, w, rstd, dx, dw != nullptr ? &partials[b * cols] : nullptr, b * rows_per_block,
                      std::min(rows, (b + 1) * rows_per_block), cols);
    }
  });
  if (dw == nullptr) {
    return;
  }
  if (blocks == 0) {
    std::fill(dw, dw + cols, T(0));
    return;
  }
  at::parallel_for(0, cols, std::max<int64_t>(1, kMinElementsPerTask / blocks),
                   [&](int64_t begin, int64_t end) { sumPartialsIsa(partials.data(), blocks, dw, begin, end, cols); });
}

}  // namespace

template <typename T>
void rmsNormForward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t cols, double eps) {
  forwardImpl<T>(x, nullptr, weight, y, nullptr, rstd, rows, cols, eps);
}

template <typename T>
void rmsNormBackward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx, T* dweight, int64_t rows,
                     int64_t cols) {
  backwardImpl<T>(dy, nullptr, x, weight, rstd, dx, dweight, rows, cols);
}

template <typename T>
void fusedAddRmsNormForward(const T* x, const T* residual, const T* weight, T* y, T* residual_out, T* rstd,
                            int64_t rows, int64_t cols, double eps) {
  forwardImpl<T>(x, residual, weight, y, residual_out, rstd, rows, cols, eps);
}

template <typename T>
void fusedAddRmsNormBackward(const T* dy, const T* dresidual_out, const T* residual_out, const T* weight, const T* rstd,
                             T* dx, T* dweight, int64_t rows, int64_t cols) {
  backwardImpl<T>(dy, dresidual_out, residual_out, weight, rstd, dx, dweight, rows, cols);
}

#define LOOM_INSTANTIATE_RMS_NORM(T)                                                                           \
  template void rmsNormForward<T>(const T*, const T*, T*, T*, int64_t, int64_t, double);                       \
  template void rmsNormBackward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t);          \
  template void fusedAddRmsNormForward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double); \
  template void fusedAddRmsNormBackward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t);
LOOM_INSTANTIATE_RMS_NORM(float)
LOOM_INSTANTIATE_RMS_NORM(double)
#undef LOOM_INSTANTIATE_RMS_NORM

}  // namespace loom::kernels::cpu
