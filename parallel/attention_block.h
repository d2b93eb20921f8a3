// Attention of one block of queries against one block of keys and values, and
// the exact log-sum-exp merge of partial results (parallel_elastic.md §1.1):
// the pieces ring attention (ring_attention.h) is built from, usable alone.
//
// Layout: q [B, H, Lq, hd], k and v [B, KV, Lk, hd] with KV dividing H; query
// head h reads key/value head h / (H / KV) (grouped-query attention). Which
// (query, key) pairs may attend is given by a bool mask [Lq, Lk] shared by the
// batch and heads (undefined: all). A query row with no allowed key has
// lse = -inf and a zero output, and merges as "no contribution".
//
// For one block, with s_ij = scale q_i . k_j over the allowed j:
//   lse_i = log sum_j exp(s_ij),   out_i = sum_j exp(s_ij - lse_i) v_j.
// Merging (out_a, lse_a) and (out_b, lse_b) of disjoint key sets:
//   lse = log(exp(lse_a) + exp(lse_b)),
//   out = exp(lse_a - lse) out_a + exp(lse_b - lse) out_b,
// computed around m = max(lse_a, lse_b) so that nothing overflows and -inf on
// either side (or both) needs no special case. Commutative; associative up to
// float rounding. Outputs and lse are float32 whatever the inputs' dtype.
//
// Backward of one block, given the FINAL merged out and lse of its query rows
// and the upstream gradient dout (D_i = sum_d dout_id out_id):
//   p_ij = exp(s_ij - lse_i) (allowed pairs, else 0)
//   dv_j += sum_i p_ij dout_i,   ds_ij = p_ij (dout_i . v_j - D_i),
//   dq_i += scale sum_j ds_ij k_j,   dk_j += scale sum_i ds_ij q_i.
// The sums of these block gradients over all key blocks are the gradients of
// attention over all keys.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace loom::parallel {

struct BlockAttention {
  at::Tensor out;  ///< float32 [B, H, Lq, hd]
  at::Tensor lse;  ///< float32 [B, H, Lq]
};

struct BlockGradients {
  at::Tensor dq;  ///< float32 [B, H, Lq, hd]
  at::Tensor dk;  ///< float32 [B, KV, Lk, hd]
  at::Tensor dv;  ///< float32 [B, KV, Lk, hd]
};

/// The allowed pairs of queries and keys from their token metadata: int64
/// positions and document ids ([Lq] and [Lk]). Query i may attend key j when
/// both are in the same document (document id >= 0; -1 marks padding, which
/// attends nothing and is attended by nothing) and, if causal, pos_j <= pos_i.
at::Tensor attentionMask(const at::Tensor& q_positions, const at::Tensor& q_documents, const at::Tensor& k_positions,
                         const at::Tensor& k_documents, bool causal);

/// (query, key) pairs blockAttention computes for `mask`: it works on
/// rectangles of consecutive query rows whose allowed key spans overlap, so
/// packed documents cost the sum of their squares, not the square of their
/// sum (variable-length attention), and rows without keys cost nothing.
int64_t computedPairs(const at::Tensor& mask);

/// One block's attention (above). `mask`: bool [Lq, Lk] or undefined (all allowed).
BlockAttention blockAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                              double scale);

/// Merges `block` into `running` in place (both float32; running.lse finite or -inf).
void mergeBlockInto(BlockAttention& running, const BlockAttention& block);

/// One block's gradients (above). `out`, `lse`, `dout`: the final merged
/// output, its lse and the upstream gradient for these query rows.
BlockGradients blockAttentionBackward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& mask, double scale, const at::Tensor& out,
                                      const at::Tensor& lse, const at::Tensor& dout);

}  // namespace loom::parallel
