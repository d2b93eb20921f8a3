// Rotary position embedding (RoPE) on the CPU, over raw buffers: the rotation that
// model/rope.cpp composes from unflatten/select/stack, in one pass.
//
// x is [batch, seq, heads, head_dim] with a contiguous last dim and arbitrary other
// strides (RopeLayout), so projections can be rotated through views without a copy;
// y is written contiguous [batch, seq, heads, head_dim]. cos and sin are contiguous
// [seq, head_dim / 2] tables holding the rows for the positions of x's seq dim
// (rows start_pos .. start_pos + seq - 1 of a model's table). Pair i of every head
// at seq index t, with c = cos[t][i] and s = sin[t][i]:
//   y[2i]   = x[2i] c - x[2i+1] s
//   y[2i+1] = x[2i] s + x[2i+1] c
// The map is a rotation, so its backward is the inverse rotation (c, -s) of dy.
//
// Vectorisation: each call first expands the tables to [seq, head_dim] rows
// c' = (c0, c0, c1, c1, ...) and s' = (-s0, s0, -s1, s1, ...) (signs flipped for the
// inverse), so a row is y = x * c' + swapPairs(x) * s' in 32-byte vectors with the
// pairs never straddling a vector (head_dim and the lane counts are even). Entry
// points are compiled for x86-64-v3 and the baseline and picked at load time
// (simd.h).
//
// Determinism: each output element depends only on its own pair and table entry,
// computed by code fixed by head_dim, so results are bitwise identical for any
// at::get_num_threads() on the same machine and build.
//
// REQUIRES for every call: all sizes >= 0, head_dim even, the layout's strides
// address valid elements of x, no output aliases an input.
#pragma once

#include <cstdint>

namespace loom::kernels {

/// Where the elements of a [batch, seq, heads, head_dim] tensor are: element
/// (b, t, h, d) is at data[b * batch_stride + t * seq_stride + h * head_stride + d].
/// Shared by the CPU and CUDA RoPE launchers.
struct RopeLayout {
  int64_t batch = 0;
  int64_t seq = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t batch_stride = 0;
  int64_t seq_stride = 0;
  int64_t head_stride = 0;
};

}  // namespace loom::kernels

namespace loom::kernels::cpu {

/// y = RoPE(x) (above); T is float or double, y contiguous [batch, seq, heads, head_dim].
template <typename T>
void ropeForward(const T* x, const RopeLayout& x_layout, const T* cos, const T* sin, T* y);

/// dx = the inverse rotation of dy (dy laid out by dy_layout, dx contiguous).
template <typename T>
void ropeBackward(const T* dy, const RopeLayout& dy_layout, const T* cos, const T* sin, T* dx);

}  // namespace loom::kernels::cpu
