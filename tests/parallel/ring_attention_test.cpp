// Ring attention over real Gloo communicators, ranks as threads
// (parallel/ring_attention.h; parallel_elastic.md §6 tests 2-5): every rank's
// output and dQ/dK/dV equal single-device attention over the whole sequence
// restricted to its tokens, within 1e-5 in float32, for cp in {2, 3, 4},
// causal and not, MHA and GQA, zigzag and contiguous shares, packed documents
// (some shorter than cp) and lengths that need padding; zigzag's per-step work
// is equal on every rank. Also the second halves of zigzag shares as queries
// (tensor-parallel token splitting) and where a row may split.
#include "parallel/ring_attention.h"

#include "parallel/attention_block.h"
#include "runtime/core/error.h"
#include "tests/parallel/attention_reference.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loom::parallel {
namespace {

constexpr double kTolerance = 1e-5;

struct Case {
  std::string name;
  int cp;
  int64_t length;
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  bool causal;
  bool zigzag;                     // else contiguous shares
  std::vector<int64_t> documents;  // lengths of packed documents (empty: one)
};

// Document id of every position.
at::Tensor documentIds(const Case& c) {
  at::Tensor ids = at::zeros({c.length}, at::kLong);
  int64_t at_pos = 0;
  int64_t id = 0;
  for (int64_t len : c.documents) {
    ids.narrow(0, at_pos, len).fill_(id++);
    at_pos += len;
  }
  return ids;
}

// Rank r's token indices: zigzag, or contiguous chunks of ceil(L / cp).
std::vector<int64_t> shareOf(const Case& c, int rank) {
  if (c.zigzag) return zigzagIndices(c.length, c.cp, rank);
  const int64_t chunk = (c.length + c.cp - 1) / c.cp;
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < chunk; ++i) indices.push_back(rank * chunk + i);
  return indices;
}

// Rows `indices` of x along dim 1; rows past the sequence are zero padding.
at::Tensor take(const at::Tensor& x, const std::vector<int64_t>& indices, int64_t length) {
  std::vector<at::Tensor> rows;
  for (int64_t i : indices) rows.push_back(i < length ? x.select(1, i) : at::zeros_like(x.select(1, 0)));
  return at::stack(rows, 1);
}

// The layout of `share`: its positions, their documents, -1 past the sequence.
TokenLayout layoutOf(const Case& c, const std::vector<int64_t>& share, const at::Tensor& docs) {
  TokenLayout layout{at::tensor(share, at::kLong), at::full({static_cast<int64_t>(share.size())}, -1, at::kLong)};
  for (size_t i = 0; i < share.size(); ++i) {
    if (share[i] < c.length) layout.documents[static_cast<int64_t>(i)] = docs[share[i]];
  }
  return layout;
}

at::Tensor documentsOf(const Case& c) {
  return c.documents.empty() ? at::zeros({c.length}, at::kLong) : documentIds(c);
}

// (rows of `share` that are real tokens, those tokens)
std::pair<at::Tensor, at::Tensor> realRows(const std::vector<int64_t>& share, int64_t length) {
  std::vector<int64_t> rows, tokens;
  for (size_t i = 0; i < share.size(); ++i) {
    if (share[i] < length) {
      rows.push_back(static_cast<int64_t>(i));
      tokens.push_back(share[i]);
    }
  }
  return {at::tensor(rows, at::kLong), at::tensor(tokens, at::kLong)};
}

// Every rank's share of keys and values, and as queries either the whole share
// or (second_halves: tensor-parallel token splitting) its second half, whose
// queries then attend every rank's keys: the output and dQ equal the reference's
// rows for those queries, dK and dV its gradients with the upstream gradient on
// those rows only.
void runCase(const Case& c, bool second_halves = false) {
  loom::test::runRanks(c.cp, [&](int rank, dist::Communicator& comm) {
    const at::Generator gen = at::detail::createCPUGenerator(1000 + c.length);
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    at::Tensor q = at::randn({2, c.length, c.heads, c.head_dim}, gen, f64).requires_grad_(true);
    at::Tensor k = at::randn({2, c.length, c.kv_heads, c.head_dim}, gen, f64).requires_grad_(true);
    at::Tensor v = at::randn({2, c.length, c.kv_heads, c.head_dim}, gen, f64).requires_grad_(true);
    const at::Tensor dout = at::randn({2, c.length, c.heads, c.head_dim}, gen, f64);
    const at::Tensor positions = at::arange(c.length, at::kLong);
    const at::Tensor docs = documentsOf(c);
    // Where each rank's queries start in its share; the rows some rank queries.
    const int64_t first = second_halves ? static_cast<int64_t>(shareOf(c, 0).size()) / 2 : 0;
    at::Tensor queried = at::zeros({1, c.length, 1, 1}, f64);
    for (int r = 0; r < c.cp; ++r) {
      const std::vector<int64_t> share = shareOf(c, r);
      for (size_t j = static_cast<size_t>(first); j < share.size(); ++j) {
        if (share[j] < c.length) queried[0][share[j]] = 1;
      }
    }
    const at::Tensor ref = test::referenceAttention(q, k, v, attentionMask(positions, docs, positions, docs, c.causal));
    ref.backward(dout * queried);

    const std::vector<int64_t> share = shareOf(c, rank);
    const std::vector<int64_t> queries(share.begin() + first, share.end());
    const TokenLayout layout = layoutOf(c, share, docs);
    const int64_t count = layout.positions.numel() - first;
    const TokenLayout q_layout{layout.positions.narrow(0, first, count), layout.documents.narrow(0, first, count)};
    if (second_halves) {
      EXPECT_TRUE(leadingTokensArePrefix(layout, first, comm)) << c.name;
    }
    at::Tensor lq = take(q.detach(), queries, c.length).to(at::kFloat).requires_grad_(true);
    at::Tensor lk = take(k.detach(), share, c.length).to(at::kFloat).requires_grad_(true);
    at::Tensor lv = take(v.detach(), share, c.length).to(at::kFloat).requires_grad_(true);
    const RingAttentionOptions opts{c.causal};
    const at::Tensor out = second_halves ? ringAttention(lq, q_layout, lk, lv, layout, comm, opts)
                                         : ringAttention(lq, lk, lv, layout, comm, opts);
    out.backward(take(dout, queries, c.length).to(at::kFloat));

    const auto [q_rows, q_tokens] = realRows(queries, c.length);
    const auto [rows, tokens] = realRows(share, c.length);
    EXPECT_LE(test::maxAbsDiff(out.detach().index_select(1, q_rows), ref.detach().index_select(1, q_tokens)),
              kTolerance)
        << c.name << " rank " << rank << " output";
    EXPECT_LE(test::maxAbsDiff(lq.grad().index_select(1, q_rows), q.grad().index_select(1, q_tokens)), kTolerance)
        << c.name << " rank " << rank << " dq";
    EXPECT_LE(test::maxAbsDiff(lk.grad().index_select(1, rows), k.grad().index_select(1, tokens)), kTolerance)
        << c.name << " rank " << rank << " dk";
    EXPECT_LE(test::maxAbsDiff(lv.grad().index_select(1, rows), v.grad().index_select(1, tokens)), kTolerance)
        << c.name << " rank " << rank << " dv";
  });
}

TEST(RingAttentionTest, EqualsSingleDeviceAttentionForwardAndBackward) {
  const std::vector<Case> cases = {
      {"cp2 causal zigzag GQA", 2, 32, 4, 2, 16, true, true, {}},
      {"cp3 causal zigzag MHA", 3, 36, 2, 2, 16, true, true, {}},
      {"cp4 causal zigzag GQA hd64", 4, 48, 4, 1, 64, true, true, {}},
      {"cp3 non-causal contiguous", 3, 30, 4, 2, 16, false, false, {}},
      {"cp4 non-causal zigzag", 4, 40, 2, 1, 16, false, true, {}},
      {"cp3 causal contiguous (no zigzag)", 3, 27, 4, 2, 16, true, false, {}},
      {"cp4 causal zigzag, length 37 padded to 40", 4, 37, 4, 2, 16, true, true, {}},
      {"cp3 causal zigzag, documents 5+1+2+20+9", 3, 37, 4, 2, 16, true, true, {5, 1, 2, 20, 9}},
      {"cp2 non-causal contiguous, documents 3+14", 2, 17, 2, 2, 16, false, false, {3, 14}},
  };
  for (const Case& c : cases) runCase(c);
}

// Zigzag chunking balances causal work exactly: at every ring step after the
// first, every rank computes the same number of (query, key) pairs.
TEST(RingAttentionTest, ZigzagBalancesCausalWorkExactly) {
  for (const int cp : {2, 3, 4, 8}) {
    const int64_t length = 2 * cp * 5;
    for (int step = 1; step < cp; ++step) {
      const int64_t expected = zigzagPairs(length, cp, 0, step);
      EXPECT_EQ(expected, 2 * 5 * 5) << "cp " << cp << " step " << step;  // (2c x c) or (c x 2c), c = 5
      for (int rank = 1; rank < cp; ++rank) {
        EXPECT_EQ(zigzagPairs(length, cp, rank, step), expected) << "cp " << cp << " rank " << rank << " step " << step;
      }
    }
    int64_t total0 = 0;
    for (int step = 0; step < cp; ++step) total0 += zigzagPairs(length, cp, 0, step);
    for (int rank = 1; rank < cp; ++rank) {
      int64_t total = 0;
      for (int step = 0; step < cp; ++step) total += zigzagPairs(length, cp, rank, step);
      EXPECT_EQ(total, total0) << "cp " << cp << " rank " << rank;
    }
  }
}

// Token splitting under ring attention: the second half of every rank's zigzag
// share as queries (ringAttention with a query layout) against every rank's
// whole share as keys equals single-device attention's rows for those queries,
// and its gradients equal the reference's with the upstream gradient on those
// rows only (1e-5, float32 against float64).
TEST(RingAttentionTest, SecondHalvesAgainstEveryRanksKeysEqualSingleDeviceAttention) {
  const std::vector<Case> cases = {
      {"cp2 causal GQA", 2, 32, 4, 2, 16, true, true, {}},
      {"cp3 causal, documents 5+1+2+20+9", 3, 37, 4, 2, 16, true, true, {5, 1, 2, 20, 9}},
      {"cp4 causal, length 37 padded to 40", 4, 37, 4, 2, 16, true, true, {}},
  };
  for (const Case& c : cases) runCase(c, /*second_halves=*/true);
}

// A row splits under ring attention only where every rank's leading tokens
// are a causal prefix of their documents over all ranks.
TEST(RingAttentionTest, LeadingTokensArePrefixOnlyWhereNoOtherTokenComesFirst) {
  loom::test::runRanks(3, [](int rank, dist::Communicator& comm) {
    const TokenLayout zigzag = zigzagLayout(36, 3, rank);  // chunks of 6
    EXPECT_TRUE(leadingTokensArePrefix(zigzag, 6, comm));
    EXPECT_FALSE(leadingTokensArePrefix(zigzag, 7, comm));  // rank 0's position 30 before rank 1's 24
    EXPECT_TRUE(leadingTokensArePrefix(zigzag, 0, comm));
    EXPECT_TRUE(leadingTokensArePrefix(zigzag, 12, comm));
    const at::Tensor contiguous = at::arange(12 * rank, 12 * rank + 12, at::kLong);
    EXPECT_FALSE(leadingTokensArePrefix({contiguous, at::zeros({12}, at::kLong)}, 6, comm));
    // One document per rank: any split is a prefix of each.
    EXPECT_TRUE(
        leadingTokensArePrefix({at::arange(12, at::kLong), at::full({12}, 7 + 1000 * rank, at::kLong)}, 5, comm));
  });
}

TEST(RingAttentionTest, UnequalSharesAreRejectedWithTheRanksNamed) {
  EXPECT_THROW(loom::test::runRanks(2,
                                    [](int rank, dist::Communicator& comm) {
                                      const int64_t n = rank == 0 ? 4 : 6;
                                      const at::Tensor x = at::randn({1, n, 2, 8});
                                      ringAttention(x, x, x,
                                                    TokenLayout{at::arange(n, at::kLong), at::zeros({n}, at::kLong)},
                                                    comm);
                                    }),
               InputError);
}

}  // namespace
}  // namespace loom::parallel
