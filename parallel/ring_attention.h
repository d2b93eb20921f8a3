// Context-parallel attention over a ring of ranks (ring attention; issue 6,
// parallel_elastic.md §1, docs/context_parallel.md).
//
// The ranks of `group` each hold a share of the same token sequence(s): their
// queries, keys and values, plus each token's position and document id
// (TokenLayout). Forward: every rank computes its queries against its own keys
// and values, then passes them on to rank + 1 and takes rank - 1's, N - 1
// times, merging each block's partial result exactly in float32 with the
// log-sum-exp rule (attention_block.h); the next block's keys and values
// travel while the current block computes. Backward: the key/value blocks go
// round the ring again (again one block ahead of the compute) together with an
// accumulator of their gradients, which every rank adds its share to; after N
// steps each accumulator is back at its owner. dQ stays local. Each rank's results equal single-device attention
// over the whole sequence restricted to its queries.
//
// Masks come from the token metadata: a query attends keys of its own document
// (id >= 0; -1 is padding) at positions <= its own when causal. So packed
// documents, padding to a multiple of 2N and zigzag chunking need nothing
// special, and work is skipped outside each block's allowed region: with
// zigzag chunking (rank r holds chunks r and 2N - 1 - r of 2N) every ring step
// after the first computes the same number of pairs on every rank.
//
// The group's ranks must hold the same number of tokens (pad with document
// -1). Collective over `group` (point-to-point with the ring neighbours and
// one all-gather of the metadata); use `group` from one thread.
#pragma once

#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom::parallel {

/// This rank's tokens: int64 [L] global positions and document ids (-1: padding).
struct TokenLayout {
  at::Tensor positions;
  at::Tensor documents;
};

struct RingAttentionOptions {
  bool causal = true;
  double scale = 0;  ///< 0: 1 / sqrt(head_dim)
};

/// q [B, L, H, hd], k and v [B, L, KV, hd] (KV divides H): this rank's share.
/// Returns [B, L, H, hd] in q's dtype, differentiable with respect to q, k, v.
/// `group` must outlive the backward pass.
at::Tensor ringAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenLayout& layout,
                         dist::Communicator& group, const RingAttentionOptions& opts = {});

/// Attention of some of this rank's tokens as queries, q [B, Lq, H, hd] at
/// `q_layout`, to every rank's keys and values k, v [B, L, KV, hd] at `layout`
/// (the same L on every rank): the second half of a row split in two, its
/// keys being both halves (tensor-parallel token splitting). Collective, like
/// the above.
at::Tensor ringAttention(const at::Tensor& q, const TokenLayout& q_layout, const at::Tensor& k, const at::Tensor& v,
                         const TokenLayout& layout, dist::Communicator& group, const RingAttentionOptions& opts = {});

/// Whether the first `count` tokens of every rank's `layout` (over `group`)
/// are a causal prefix of each of their documents: no other token of the same
/// document, on any rank, sits at a position <= theirs. Then those tokens'
/// causal attention needs only themselves, and the row splits there (as
/// zigzag chunking does at half a share). Collective over `group`; the same
/// answer on every rank.
bool leadingTokensArePrefix(const TokenLayout& layout, int64_t count, dist::Communicator& group);

/// Token indices of rank `rank`'s zigzag share of a sequence of `length`
/// tokens over `ranks` ranks: chunks rank and 2 ranks - 1 - rank of the length
/// padded up to a multiple of 2 ranks (indices >= length are padding).
std::vector<int64_t> zigzagIndices(int64_t length, int ranks, int rank);

/// The layout of those indices: positions = index, document 0, padding -1.
TokenLayout zigzagLayout(int64_t length, int ranks, int rank);

/// Unmasked (query, key) pairs of a causal sequence that rank `rank` computes
/// at ring step `step` under zigzag chunking (for balance checks and cost models).
int64_t zigzagPairs(int64_t length, int ranks, int rank, int step);

}  // namespace loom::parallel
