#include "optim/outer/group_average.h"

#include "optim/outer/codec.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <memory>

namespace loom::optim::outer {
namespace {

constexpr int kMaxTag = 1 << 30;  // 2 * tag + 1 must fit an int

// This rank's index in `group`, after checking the group is valid for `comm`.
int groupRankOf(const dist::Communicator& comm, const std::vector<int>& group) {
  LOOM_CHECK_INPUT(!group.empty(), "averageInGroup: the group is empty");
  int group_rank = -1;
  for (size_t i = 0; i < group.size(); ++i) {
    LOOM_CHECK_INPUT(group[i] >= 0 && group[i] < comm.size(), "averageInGroup: group member ", group[i],
                     " is not a rank of a world of ", comm.size());
    LOOM_CHECK_INPUT(i == 0 || group[i - 1] < group[i], "averageInGroup: the group must be ascending, got ",
                     group[i - 1], " before ", group[i]);
    if (group[i] == comm.rank()) group_rank = static_cast<int>(i);
  }
  LOOM_CHECK_INPUT(group_rank >= 0, "averageInGroup: rank ", comm.rank(), " is not in its group of ", group.size(),
                   " (first ", group.front(), ", last ", group.back(), ")");
  return group_rank;
}

at::Tensor encoded(PseudoGradientCodec codec, const at::Tensor& values) {
  at::Tensor bytes = at::empty({encodedBytes(codec, values.numel())}, at::kByte);
  encode(codec, values, bytes);
  return bytes;
}

void waitAll(std::vector<std::unique_ptr<dist::Work>>& works) {
  for (auto& work : works) work->wait();
}

}  // namespace

void averageInGroup(dist::Communicator& comm, const std::vector<int>& group, at::Tensor& buffer,
                    PseudoGradientCodec codec, int tag) {
  const int me = groupRankOf(comm, group);
  LOOM_CHECK_INPUT(buffer.scalar_type() == at::kFloat && buffer.device().is_cpu() && buffer.is_contiguous(),
                   "averageInGroup: the buffer must be a contiguous float32 CPU tensor, got ", buffer.scalar_type(),
                   " on ", buffer.device());
  LOOM_CHECK_INPUT(tag >= 0 && tag < kMaxTag, "averageInGroup: tag ", tag, " must lie in [0, ", kMaxTag, ")");
  const int g = static_cast<int>(group.size());
  const at::Tensor flat = buffer.view({-1});
  const int64_t n = flat.numel();
  auto chunk = [&](int member) {
    const ChunkRange r = chunkRange(n, g, member);
    return flat.slice(0, r.begin, r.end);
  };
  at::Tensor mine = chunk(me);
  if (g == 1) {
    decode(codec, encoded(codec, mine), mine);
    return;
  }
  const int reduce_tag = 2 * tag;
  const int gather_tag = 2 * tag + 1;

  // Encode first: a non-finite value throws here, before any message is in flight.
  std::vector<at::Tensor> outgoing(g);
  for (int j = 0; j < g; ++j) {
    try {
      outgoing[j] = encoded(codec, chunk(j));
    } catch (const InputError& e) {
      const ChunkRange r = chunkRange(n, g, j);
      LOOM_THROW(InputError, "averageInGroup: chunk ", j, " of ", g, " (buffer elements [", r.begin, ", ", r.end,
                 ")): ", errorMessage(e));
    }
  }

  // Every receive, then every reduce send. Empty chunks exchange nothing.
  std::vector<at::Tensor> incoming(g);
  std::vector<at::Tensor> gathered(g);
  std::vector<std::unique_ptr<dist::Work>> reduce_recvs;
  std::vector<std::unique_ptr<dist::Work>> gather_recvs;
  std::vector<std::unique_ptr<dist::Work>> sends;
  const int64_t mine_bytes = outgoing[me].numel();
  for (int j = 0; j < g; ++j) {
    if (j == me) continue;
    if (mine_bytes > 0) {
      incoming[j] = at::empty({mine_bytes}, at::kByte);
      reduce_recvs.push_back(comm.recv(incoming[j], group[j], reduce_tag));
    }
    if (outgoing[j].numel() > 0) {
      gathered[j] = at::empty({outgoing[j].numel()}, at::kByte);
      gather_recvs.push_back(comm.recv(gathered[j], group[j], gather_tag));
    }
  }
  for (int j = 0; j < g; ++j) {
    if (j != me && outgoing[j].numel() > 0) sends.push_back(comm.send(outgoing[j], group[j], reduce_tag));
  }

  // Reduce my chunk: decoded contributions summed in member order, in fp32.
  at::Tensor average;  // outlives the gather sends
  if (mine_bytes > 0) {
    incoming[me] = outgoing[me];
    waitAll(reduce_recvs);
    const int64_t size = mine.numel();
    at::Tensor sum = at::empty({size}, at::kFloat);
    at::Tensor term = at::empty({size}, at::kFloat);
    float* acc = sum.data_ptr<float>();
    const float* t = term.data_ptr<float>();
    for (int j = 0; j < g; ++j) {
      decode(codec, incoming[j], j == 0 ? sum : term);
      if (j == 0) continue;
      for (int64_t i = 0; i < size; ++i) acc[i] += t[i];
    }
    const float members = static_cast<float>(g);
    for (int64_t i = 0; i < size; ++i) acc[i] /= members;

    // Gather: everyone, me included, decodes the same bytes.
    average = encoded(codec, sum);
    for (int j = 0; j < g; ++j) {
      if (j != me) sends.push_back(comm.send(average, group[j], gather_tag));
    }
    decode(codec, average, mine);
  }
  waitAll(gather_recvs);
  for (int j = 0; j < g; ++j) {
    if (j == me || !gathered[j].defined()) continue;
    at::Tensor theirs = chunk(j);
    decode(codec, gathered[j], theirs);
  }
  waitAll(sends);
}

}  // namespace loom::optim::outer
