#include "parallel/attention_block.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace loom::parallel {
namespace {

constexpr double kMinusInf = -std::numeric_limits<double>::infinity();

// Rectangles of rows x columns that hold every allowed pair: consecutive rows
// whose allowed-column spans overlap share a rectangle, so packed documents get
// one rectangle each (their spans are disjoint) and the masked pairs between
// documents are never computed, as in variable-length attention; a causal
// share of one document is a single rectangle. Rows with no allowed key are in none.
struct Box {
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
};

std::vector<Box> boxesOf(const at::Tensor& mask, int64_t rows, int64_t cols) {
  if (!mask.defined()) return {Box{0, rows, 0, cols}};
  const at::Tensor as_int = mask.to(at::kByte);
  const at::Tensor any = mask.any(1).contiguous();
  const at::Tensor first = as_int.argmax(1).contiguous();                // first allowed column
  const at::Tensor last = (cols - 1) - as_int.flip(1).argmax(1).contiguous();  // last allowed column
  const bool* a = any.data_ptr<bool>();
  const int64_t* lo = first.data_ptr<int64_t>();
  const int64_t* hi = last.data_ptr<int64_t>();
  std::vector<Box> boxes;
  for (int64_t r = 0; r < rows; ++r) {
    if (!a[r]) continue;
    Box* open = boxes.empty() || boxes.back().row_end != r ? nullptr : &boxes.back();
    if (open != nullptr && lo[r] < open->col_end && hi[r] + 1 > open->col_begin) {
      open->row_end = r + 1;
      open->col_begin = std::min(open->col_begin, lo[r]);
      open->col_end = std::max(open->col_end, hi[r] + 1);
    } else {
      boxes.push_back(Box{r, r + 1, lo[r], hi[r] + 1});
    }
  }
  return boxes;
}

// One rectangle's inputs in float32, and its part of the mask (undefined: all allowed).
struct BoxInputs {
  int64_t rows, cols;
  at::Tensor q, k, v, mask;
};

BoxInputs sliceBox(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                   const Box& box) {
  BoxInputs in{box.row_end - box.row_begin, box.col_end - box.col_begin, {}, {}, {}, {}};
  in.q = q.narrow(2, box.row_begin, in.rows).to(at::kFloat);
  in.k = k.narrow(2, box.col_begin, in.cols).to(at::kFloat);
  in.v = v.narrow(2, box.col_begin, in.cols).to(at::kFloat);
  if (mask.defined()) in.mask = mask.slice(0, box.row_begin, box.row_end).slice(1, box.col_begin, box.col_end);
  return in;
}

void checkShapes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  LOOM_CHECK(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() && q.size(0) == k.size(0) &&
                 q.size(3) == k.size(3) && k.size(1) > 0 && q.size(1) % k.size(1) == 0,
             "attention block: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes(),
             " are not [B, H, Lq, hd], [B, KV, Lk, hd] with KV dividing H");
  LOOM_CHECK(!mask.defined() || (mask.scalar_type() == at::kBool && mask.dim() == 2 && mask.size(0) == q.size(2) &&
                                 mask.size(1) == k.size(2)),
             "attention block: the mask must be bool [", q.size(2), ", ", k.size(2), "]");
}

// Queries grouped by their key/value head: [B, H, L, hd] -> [B, KV, G*L, hd].
at::Tensor groupByKv(const at::Tensor& q, int64_t kv_heads) {
  const int64_t b = q.size(0), h = q.size(1), l = q.size(2), d = q.size(3);
  return q.reshape({b, kv_heads, (h / kv_heads) * l, d});
}

// Masked scores scale * q k^T over the box: [B, KV, G, Lq', Lk'] float32.
at::Tensor maskedScores(const at::Tensor& qg, const at::Tensor& k, const at::Tensor& mask, double scale, int64_t group,
                        int64_t q_len) {
  at::Tensor scores = at::matmul(qg, k.transpose(2, 3)).mul_(scale);
  scores = scores.view({k.size(0), k.size(1), group, q_len, k.size(2)});
  if (mask.defined()) scores.masked_fill_(mask.logical_not(), kMinusInf);
  return scores;
}

// exp(s - lse) with rows whose lse is -inf (no allowed key) giving zeros.
at::Tensor probabilities(const at::Tensor& scores, const at::Tensor& lse) {
  const at::Tensor safe = at::where(at::isinf(lse), at::zeros_like(lse), lse);
  return at::exp(scores - safe.unsqueeze(-1));
}

}  // namespace

at::Tensor attentionMask(const at::Tensor& q_positions, const at::Tensor& q_documents, const at::Tensor& k_positions,
                         const at::Tensor& k_documents, bool causal) {
  const at::Tensor same_document =
      q_documents.unsqueeze(1).eq(k_documents.unsqueeze(0)).logical_and_(q_documents.ge(0).unsqueeze(1));
  if (!causal) return same_document;
  return same_document.logical_and_(k_positions.unsqueeze(0).le(q_positions.unsqueeze(1)));
}

int64_t computedPairs(const at::Tensor& mask) {
  int64_t pairs = 0;
  for (const Box& box : boxesOf(mask, mask.size(0), mask.size(1))) {
    pairs += (box.row_end - box.row_begin) * (box.col_end - box.col_begin);
  }
  return pairs;
}

BlockAttention blockAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                              double scale) {
  checkShapes(q, k, v, mask);
  c10::NoGradGuard no_grad;
  const int64_t b = q.size(0), h = q.size(1), lq = q.size(2), d = q.size(3), kv = k.size(1);
  BlockAttention result{at::zeros({b, h, lq, d}, at::kFloat), at::full({b, h, lq}, kMinusInf, at::kFloat)};
  const int64_t group = h / kv;
  for (const Box& box : boxesOf(mask, lq, k.size(2))) {
    const BoxInputs in = sliceBox(q, k, v, mask, box);
    const at::Tensor scores = maskedScores(groupByKv(in.q, kv), in.k, in.mask, scale, group, in.rows);  // [B,KV,G,R,C]
    const at::Tensor lse = at::logsumexp(scores, -1);                                                     // [B,KV,G,R]
    const at::Tensor probs = probabilities(scores, lse).view({b, kv, group * in.rows, in.cols});
    result.out.narrow(2, box.row_begin, in.rows).copy_(at::matmul(probs, in.v).view({b, h, in.rows, d}));
    result.lse.narrow(2, box.row_begin, in.rows).copy_(lse.view({b, h, in.rows}));
  }
  return result;
}

void mergeBlockInto(BlockAttention& running, const BlockAttention& block) {
  c10::NoGradGuard no_grad;
  const at::Tensor m = at::maximum(running.lse, block.lse);
  const at::Tensor m_safe = at::where(at::isinf(m), at::zeros_like(m), m);  // both -inf: weights 0 below
  const at::Tensor wa = at::exp(running.lse - m_safe);
  const at::Tensor wb = at::exp(block.lse - m_safe);
  const at::Tensor sum = wa + wb;
  const at::Tensor safe_sum = at::where(sum.eq(0), at::ones_like(sum), sum);
  running.out.mul_((wa / safe_sum).unsqueeze(-1)).add_(block.out * (wb / safe_sum).unsqueeze(-1));
  running.lse = m_safe + at::log(sum);
}

BlockGradients blockAttentionBackward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& mask, double scale, const at::Tensor& out,
                                      const at::Tensor& lse, const at::Tensor& dout) {
  checkShapes(q, k, v, mask);
  c10::NoGradGuard no_grad;
  const int64_t b = q.size(0), h = q.size(1), lq = q.size(2), d = q.size(3), kv = k.size(1), lk = k.size(2);
  BlockGradients grads{at::zeros({b, h, lq, d}, at::kFloat), at::zeros({b, kv, lk, d}, at::kFloat),
                       at::zeros({b, kv, lk, d}, at::kFloat)};
  const int64_t group = h / kv;
  for (const Box& box : boxesOf(mask, lq, lk)) {
    const BoxInputs in = sliceBox(q, k, v, mask, box);
    const int64_t rows = in.rows;
    const int64_t cols = in.cols;
    const at::Tensor& kb = in.k;
    const at::Tensor& vb = in.v;
    const at::Tensor ob = groupByKv(out.narrow(2, box.row_begin, rows).to(at::kFloat), kv);
    const at::Tensor dob = groupByKv(dout.narrow(2, box.row_begin, rows).to(at::kFloat), kv);
    const at::Tensor lseb = lse.narrow(2, box.row_begin, rows).reshape({b, kv, group, rows});
    const at::Tensor qg = groupByKv(in.q, kv);
    const at::Tensor probs =
        probabilities(maskedScores(qg, kb, in.mask, scale, group, rows), lseb).view({b, kv, group * rows, cols});
    const at::Tensor delta = (dob * ob).sum(-1, /*keepdim=*/true);                 // D: [B, KV, G*R, 1]
    const at::Tensor ds = probs * (at::matmul(dob, vb.transpose(2, 3)) - delta);  // [B, KV, G*R, C]
    // Rows of different rectangles are disjoint; their columns may overlap.
    grads.dq.narrow(2, box.row_begin, rows).copy_(at::matmul(ds, kb).mul_(scale).view({b, h, rows, d}));
    grads.dk.narrow(2, box.col_begin, cols).add_(at::matmul(ds.transpose(2, 3), qg).mul_(scale));
    grads.dv.narrow(2, box.col_begin, cols).add_(at::matmul(probs.transpose(2, 3), dob));
  }
  return grads;
}

}  // namespace loom::parallel
