// Block attention and the log-sum-exp merge (parallel/attention_block.h;
// parallel_elastic.md §6 test 1): keys split into blocks and merged in every
// order equal attention over all keys, fully masked blocks and rows give no
// NaN, and the block gradients summed over blocks equal autograd's.
#include "parallel/attention_block.h"

#include "tests/parallel/attention_reference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace loom::parallel {
namespace {

using test::maxAbsDiff;

struct Problem {
  at::Tensor q, k, v;  // [B, L, H, hd] and [B, Lk, KV, hd], double
  at::Tensor mask;     // [L, Lk]
};

// Causal-with-documents mask over Lk keys for the last L positions.
Problem makeProblem(int64_t lq, int64_t lk, int64_t heads, int64_t kv_heads, uint64_t seed) {
  const at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  Problem p;
  p.q = at::randn({2, lq, heads, 8}, gen, opts);
  p.k = at::randn({2, lk, kv_heads, 8}, gen, opts);
  p.v = at::randn({2, lk, kv_heads, 8}, gen, opts);
  const at::Tensor k_pos = at::arange(lk, at::kLong);
  const at::Tensor q_pos = at::arange(lk - lq, lk, at::kLong);
  const at::Tensor k_doc = k_pos.div(7, "floor").clamp_max(2);  // documents [0, 7), [7, 14), [14, lk)
  const at::Tensor q_doc = q_pos.div(7, "floor").clamp_max(2);
  p.mask = attentionMask(q_pos, q_doc, k_pos, k_doc, /*causal=*/true);
  return p;
}

at::Tensor headsFirst(const at::Tensor& t) { return t.transpose(1, 2).contiguous(); }

// Merges the blocks [cuts[i], cuts[i+1]) of the keys in `order`.
BlockAttention mergedOver(const Problem& p, const std::vector<int64_t>& cuts, const std::vector<int>& order) {
  BlockAttention running;
  bool first = true;
  for (int i : order) {
    const int64_t begin = cuts[static_cast<size_t>(i)];
    const int64_t len = cuts[static_cast<size_t>(i) + 1] - begin;
    const BlockAttention block =
        blockAttention(headsFirst(p.q), headsFirst(p.k.narrow(1, begin, len)), headsFirst(p.v.narrow(1, begin, len)),
                       p.mask.narrow(1, begin, len), 1.0 / std::sqrt(8.0));
    if (first) {
      running = block;
      first = false;
    } else {
      mergeBlockInto(running, block);
    }
  }
  return running;
}

TEST(AttentionBlockTest, BlocksMergedInEveryOrderEqualAttentionOverAllKeys) {
  // GQA (4 query heads on 2 key/value heads); 24 keys in 4 uneven blocks. The
  // queries (positions 18-23) are all in document 2, so the first two blocks
  // are fully masked: orders starting with them merge into lse = -inf first.
  const Problem p = makeProblem(/*lq=*/6, /*lk=*/24, 4, 2, 11);
  const at::Tensor ref_out = test::referenceAttention(p.q, p.k, p.v, p.mask);
  const at::Tensor ref_lse = test::referenceLse(p.q, p.k, p.mask);
  const std::vector<int64_t> cuts = {0, 5, 13, 18, 24};
  std::vector<int> order = {0, 1, 2, 3};
  int orders = 0;
  do {
    const BlockAttention merged = mergedOver(p, cuts, order);
    EXPECT_FALSE(merged.out.isnan().any().item<bool>());
    EXPECT_LE(maxAbsDiff(merged.out.transpose(1, 2), ref_out), 1e-6) << "order " << order[0] << order[1] << order[2];
    EXPECT_LE(maxAbsDiff(merged.lse, ref_lse), 1e-5);
    ++orders;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 24);
}

TEST(AttentionBlockTest, FullyMaskedBlocksAndRowsGiveZerosNotNaN) {
  const Problem p = makeProblem(4, 12, 2, 2, 5);
  const at::Tensor none = at::zeros({4, 12}, at::kBool);
  const BlockAttention empty = blockAttention(headsFirst(p.q), headsFirst(p.k), headsFirst(p.v), none, 0.5);
  EXPECT_TRUE(empty.out.eq(0).all().item<bool>());
  EXPECT_TRUE(empty.lse.isneginf().all().item<bool>());
  // -inf merged into -inf stays -inf with a zero output; into a finite result it changes nothing.
  BlockAttention running = empty;
  mergeBlockInto(running, empty);
  EXPECT_TRUE(running.lse.isneginf().all().item<bool>());
  EXPECT_FALSE(running.out.isnan().any().item<bool>());
  BlockAttention full = blockAttention(headsFirst(p.q), headsFirst(p.k), headsFirst(p.v), p.mask, 0.5);
  const BlockAttention before{full.out.clone(), full.lse.clone()};
  mergeBlockInto(full, empty);
  EXPECT_TRUE(at::equal(full.out, before.out));
  EXPECT_TRUE(at::equal(full.lse, before.lse));
  const BlockGradients g = blockAttentionBackward(headsFirst(p.q), headsFirst(p.k), headsFirst(p.v), none, 0.5,
                                                  empty.out, empty.lse, at::ones_like(empty.out));
  EXPECT_TRUE(g.dq.eq(0).all().item<bool>() && g.dk.eq(0).all().item<bool>() && g.dv.eq(0).all().item<bool>());
}

TEST(AttentionBlockTest, BlockGradientsSumToAutogradOfAttentionOverAllKeys) {
  Problem p = makeProblem(7, 20, 4, 1, 23);  // multi-query: 4 heads on 1 key/value head
  p.q.requires_grad_(true);
  p.k.requires_grad_(true);
  p.v.requires_grad_(true);
  const at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor dout = at::randn(p.q.sizes(), gen, at::TensorOptions().dtype(at::kDouble));
  test::referenceAttention(p.q, p.k, p.v, p.mask).backward(dout);

  const std::vector<int64_t> cuts = {0, 6, 9, 20};
  const BlockAttention merged = mergedOver(p, cuts, {2, 0, 1});
  at::Tensor dq = at::zeros({2, 4, 7, 8}, at::kFloat);
  std::vector<at::Tensor> dk, dv;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const int64_t len = cuts[i + 1] - cuts[i];
    const BlockGradients g = blockAttentionBackward(
        headsFirst(p.q.detach()), headsFirst(p.k.detach().narrow(1, cuts[i], len)),
        headsFirst(p.v.detach().narrow(1, cuts[i], len)), p.mask.narrow(1, cuts[i], len), 1.0 / std::sqrt(8.0),
        merged.out, merged.lse, headsFirst(dout));
    dq.add_(g.dq);
    dk.push_back(g.dk);
    dv.push_back(g.dv);
  }
  EXPECT_LE(maxAbsDiff(dq.transpose(1, 2), p.q.grad()), 1e-5);
  EXPECT_LE(maxAbsDiff(at::cat(dk, 2).transpose(1, 2), p.k.grad()), 1e-5);
  EXPECT_LE(maxAbsDiff(at::cat(dv, 2).transpose(1, 2), p.v.grad()), 1e-5);
}

// Packed documents are computed document by document: the work is the sum of
// the documents' rectangles, not the whole row's square; a causal share of
// one document stays one rectangle.
TEST(AttentionBlockTest, PackedDocumentsAreComputedOneRectangleEach) {
  const std::vector<int64_t> docs = {5, 1, 20};
  std::vector<at::Tensor> positions, ids;
  for (size_t d = 0; d < docs.size(); ++d) {
    positions.push_back(at::arange(docs[d], at::kLong));
    ids.push_back(at::full({docs[d]}, static_cast<int64_t>(d), at::kLong));
  }
  const at::Tensor pos = at::cat(positions);
  const at::Tensor doc = at::cat(ids);
  EXPECT_EQ(computedPairs(attentionMask(pos, doc, pos, doc, /*causal=*/true)), 5 * 5 + 1 * 1 + 20 * 20);
  const at::Tensor one = at::zeros({26}, at::kLong);
  const at::Tensor all = at::arange(26, at::kLong);
  EXPECT_EQ(computedPairs(attentionMask(all, one, all, one, /*causal=*/true)), 26 * 26);
  EXPECT_EQ(computedPairs(at::zeros({4, 4}, at::kBool)), 0);
}

}  // namespace
}  // namespace loom::parallel
