#include "parallel/ring_attention.h"

#include "parallel/attention_block.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>

namespace loom::parallel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Tags of the ring's messages: step s of the forward uses kForwardTag + s, of
// the backward kBackwardTag + s (the accumulators' last hop: kBackwardTag + N).
constexpr int kForwardTag = 1 << 20;
constexpr int kBackwardTag = 1 << 21;

struct Ring {
  dist::Communicator* comm;
  int size;
  int rank;
  int next() const { return (rank + 1) % size; }
  int previous() const { return (rank + size - 1) % size; }
  int sourceAt(int step) const { return (rank - step % size + size) % size; }
};

// Every rank's positions and documents, [size, 2, L], gathered once.
at::Tensor gatherLayouts(const Ring& ring, const TokenLayout& layout) {
  const int64_t length = layout.positions.numel();
  at::Tensor lengths = at::full({ring.size}, 0, at::kLong);
  ring.comm->allGather(at::full({1}, length, at::kLong), lengths)->wait();
  for (int r = 0; r < ring.size; ++r) {
    LOOM_CHECK_INPUT(lengths[r].item<int64_t>() == length, "ring attention: rank ", ring.rank, " holds ", length,
                     " tokens but rank ", r, " holds ", lengths[r].item<int64_t>(),
                     "; every rank of the ring must hold the same number (pad with document -1)");
  }
  const at::Tensor mine = at::stack({layout.positions, layout.documents}).contiguous();
  at::Tensor all = at::empty({ring.size * 2 * length}, at::kLong);
  ring.comm->allGather(mine.view({-1}), all)->wait();
  return all.view({ring.size, 2, length});
}

/// q_layout [2, Lq]: this rank's queries' positions and documents.
at::Tensor maskFor(const at::Tensor& q_layout, const at::Tensor& layouts, int k_rank, bool causal) {
  return attentionMask(q_layout[0], q_layout[1], layouts[k_rank][0], layouts[k_rank][1], causal);
}

// Keys and values of one rank as one message: [2, B, KV, L, hd].
at::Tensor packKv(const at::Tensor& k, const at::Tensor& v) { return at::stack({k, v}).contiguous(); }

// Sends `outgoing` to the next rank and receives the previous rank's into
// `incoming`; both in flight on return (wait on the pair).
struct Exchange {
  std::unique_ptr<dist::Work> recv;
  std::unique_ptr<dist::Work> send;
  void wait() {
    recv->wait();
    send->wait();
  }
};

Exchange rotate(const Ring& ring, const at::Tensor& outgoing, at::Tensor& incoming, int tag) {
  Exchange e;
  e.recv = ring.comm->recv(incoming, ring.previous(), tag);
  e.send = ring.comm->send(outgoing, ring.next(), tag);
  return e;
}

class RingAttentionFunction : public torch::autograd::Function<RingAttentionFunction> {
 public:
  // q [B, H, Lq, hd], k/v [B, KV, L, hd] (heads first); q_layout [2, Lq],
  // layouts [N, 2, L] (every rank's keys); `ring` as an integer address: the
  // caller guarantees the communicator outlives the backward.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& q_layout, const at::Tensor& layouts, int64_t comm_address, bool causal,
                            double scale) {
    const Ring ring = ringOf(comm_address);
    BlockAttention running;
    at::Tensor current = packKv(k, v);
    at::Tensor incoming = at::empty_like(current);
    for (int step = 0; step < ring.size; ++step) {
      Exchange exchange;
      const bool more = step + 1 < ring.size;
      if (more) exchange = rotate(ring, current, incoming, kForwardTag + step);
      const BlockAttention block =
          blockAttention(q, current[0], current[1], maskFor(q_layout, layouts, ring.sourceAt(step), causal), scale);
      if (step == 0) {
        running = block;
      } else {
        mergeBlockInto(running, block);
      }
      if (more) {
        exchange.wait();
        std::swap(current, incoming);
      }
    }
    ctx->save_for_backward({q, k, v, q_layout, layouts, running.out, running.lse});
    ctx->saved_data["comm"] = comm_address;
    ctx->saved_data["causal"] = causal;
    ctx->saved_data["scale"] = scale;
    return running.out.to(q.scalar_type(), /*non_blocking=*/false, /*copy=*/true);  // not the saved tensor
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &q = saved[0], &k = saved[1], &v = saved[2], &q_layout = saved[3], &layouts = saved[4],
                     &out = saved[5], &lse = saved[6];
    const Ring ring = ringOf(ctx->saved_data["comm"].toInt());
    const bool causal = ctx->saved_data["causal"].toBool();
    const double scale = ctx->saved_data["scale"].toDouble();
    const at::Tensor dout = grads[0].to(at::kFloat);

    at::Tensor dq = at::zeros(q.sizes(), at::kFloat);
    // The travelling pair: keys and values of the block's owner, and their
    // gradient accumulator ([2, B, KV, L, hd] each, float32).
    at::Tensor kv = packKv(k, v).to(at::kFloat);
    at::Tensor dkv = at::zeros_like(kv);
    at::Tensor kv_in = at::empty_like(kv);
    at::Tensor dkv_in = at::empty_like(dkv);
    for (int step = 0; step < ring.size; ++step) {
      // The next key/value block travels while this one's gradients compute
      // (the block only reads kv); the accumulator can leave only afterwards.
      Exchange kv_exchange;
      const bool more = step + 1 < ring.size;
      if (more) kv_exchange = rotate(ring, kv, kv_in, kBackwardTag + 2 * step + 1);
      const BlockGradients g = blockAttentionBackward(
          q, kv[0], kv[1], maskFor(q_layout, layouts, ring.sourceAt(step), causal), scale, out, lse, dout);
      dq.add_(g.dq);
      dkv[0].add_(g.dk);
      dkv[1].add_(g.dv);
      if (ring.size == 1) break;  // a ring of one: the accumulator is already home
      // Every step passes the accumulator on; the last hop returns it to its owner.
      Exchange grad_exchange = rotate(ring, dkv, dkv_in, kBackwardTag + 2 * step);
      grad_exchange.wait();
      std::swap(dkv, dkv_in);
      if (more) {
        kv_exchange.wait();
        std::swap(kv, kv_in);
      }
    }
    return {dq.to(q.scalar_type()), dkv[0].to(k.scalar_type()), dkv[1].to(v.scalar_type()), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

 private:
  static Ring ringOf(int64_t comm_address) {
    auto* comm = reinterpret_cast<dist::Communicator*>(static_cast<intptr_t>(comm_address));
    return Ring{comm, comm->size(), comm->rank()};
  }
};

}  // namespace

at::Tensor ringAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const TokenLayout& layout,
                         dist::Communicator& group, const RingAttentionOptions& opts) {
  return ringAttention(q, layout, k, v, layout, group, opts);
}

at::Tensor ringAttention(const at::Tensor& q, const TokenLayout& q_layout, const at::Tensor& k, const at::Tensor& v,
                         const TokenLayout& layout, dist::Communicator& group, const RingAttentionOptions& opts) {
  LOOM_CHECK_INPUT(q.dim() == 4 && k.dim() == 4 && v.sizes() == k.sizes() && q.size(0) == k.size(0) &&
                       q.size(3) == k.size(3) && k.size(2) > 0 && q.size(2) % k.size(2) == 0,
                   "ring attention: q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes(),
                   " must be [B, Lq, H, hd] and [B, L, KV, hd] with KV dividing H");
  const auto check_layout = [](const TokenLayout& l, int64_t tokens, const char* what) {
    LOOM_CHECK_INPUT(l.positions.scalar_type() == at::kLong && l.documents.scalar_type() == at::kLong &&
                         l.positions.numel() == tokens && l.documents.numel() == tokens,
                     "ring attention: the ", what, " layout must be int64 positions and documents of ", tokens,
                     " tokens each");
  };
  check_layout(q_layout, q.size(1), "query");
  check_layout(layout, k.size(1), "key");
  const Ring ring{&group, group.size(), group.rank()};
  const at::Tensor layouts = gatherLayouts(ring, layout);
  const double scale = opts.scale > 0 ? opts.scale : 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  const at::Tensor out = RingAttentionFunction::apply(
      q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous(),
      at::stack({q_layout.positions, q_layout.documents}), layouts,
      static_cast<int64_t>(reinterpret_cast<intptr_t>(&group)), opts.causal, scale);
  return out.transpose(1, 2);
}

bool leadingTokensArePrefix(const TokenLayout& layout, int64_t count, dist::Communicator& group) {
  LOOM_CHECK_INPUT(count >= 0 && count <= layout.positions.numel(), "ring attention: ", count, " leading tokens of ",
                   layout.positions.numel());
  const Ring ring{&group, group.size(), group.rank()};
  const at::Tensor all = gatherLayouts(ring, layout);  // [N, 2, L], the same on every rank
  const int64_t length = all.size(2);
  const at::Tensor positions = all.select(1, 0).reshape(-1), documents = all.select(1, 1).reshape(-1);
  const at::Tensor other = at::arange(length, at::kLong).ge(count).repeat({ring.size});  // 1: not leading
  const at::Tensor real = documents.ge(0);
  const at::Tensor doc = documents.masked_select(real), pos = positions.masked_select(real);
  const at::Tensor late = other.masked_select(real).to(at::kLong);
  // Sorted by document, then position, other tokens before leading ones at one position:
  // within a document the leading tokens must all come first.
  at::Tensor order = std::get<1>(late.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  order = order.index_select(0, std::get<1>(pos.index_select(0, order).sort(/*stable=*/true, 0, false)));
  order = order.index_select(0, std::get<1>(doc.index_select(0, order).sort(/*stable=*/true, 0, false)));
  const at::Tensor d = doc.index_select(0, order), l = late.index_select(0, order);
  const int64_t n = d.numel();
  if (n < 2) return true;
  const at::Tensor other_then_leading =
      d.narrow(0, 0, n - 1).eq(d.narrow(0, 1, n - 1)) & l.narrow(0, 0, n - 1).eq(1) & l.narrow(0, 1, n - 1).eq(0);
  return !other_then_leading.any().item<bool>();
}

std::vector<int64_t> zigzagIndices(int64_t length, int ranks, int rank) {
  LOOM_CHECK_INPUT(length >= 1 && ranks >= 1 && rank >= 0 && rank < ranks, "zigzag: length ", length, ", ", ranks,
                   " ranks, rank ", rank);
  const int64_t chunks = 2 * static_cast<int64_t>(ranks);
  const int64_t chunk = (length + chunks - 1) / chunks;
  std::vector<int64_t> indices;
  indices.reserve(static_cast<size_t>(2 * chunk));
  for (const int64_t c : {static_cast<int64_t>(rank), chunks - 1 - rank}) {
    for (int64_t i = 0; i < chunk; ++i) indices.push_back(c * chunk + i);
  }
  return indices;
}

TokenLayout zigzagLayout(int64_t length, int ranks, int rank) {
  const std::vector<int64_t> indices = zigzagIndices(length, ranks, rank);
  TokenLayout layout{at::tensor(indices, at::kLong), at::zeros({static_cast<int64_t>(indices.size())}, at::kLong)};
  layout.documents.masked_fill_(layout.positions.ge(length), -1);
  return layout;
}

int64_t zigzagPairs(int64_t length, int ranks, int rank, int step) {
  const TokenLayout mine = zigzagLayout(length, ranks, rank);
  const TokenLayout theirs = zigzagLayout(length, ranks, (rank - step % ranks + ranks) % ranks);
  return attentionMask(mine.positions, mine.documents, theirs.positions, theirs.documents, /*causal=*/true)
      .sum()
      .item<int64_t>();
}

}  // namespace loom::parallel
