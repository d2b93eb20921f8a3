// Helpers for the outer-optimizer tests: small parameter sets, gathering a
// tensor from every rank, and options with the algorithm's knobs spelled out.
#pragma once

#include "optim/adamw.h"
#include "runtime/config/options.h"
#include "runtime/dist/communicator.h"

#include <ATen/ATen.h>

#include <memory>
#include <numeric>
#include <vector>

namespace loom::optim::outer::test {

/// Two parameters ("w": 3 x 4, "b": 5), 17 elements, filled from `seed`.
inline NamedTensors smallParams(uint64_t seed) {
  const at::Generator gen = at::detail::createCPUGenerator(seed);
  return {{"w", at::randn({3, 4}, gen)}, {"b", at::randn({5}, gen)}};
}

inline at::Tensor flatOf(const NamedTensors& params) {
  std::vector<at::Tensor> parts;
  for (const auto& [name, p] : params) parts.push_back(p.detach().reshape(-1));
  return at::cat(parts);
}

inline void setFlat(const NamedTensors& params, const at::Tensor& flat) {
  int64_t offset = 0;
  for (const auto& [name, p] : params) {
    p.detach().view(-1).copy_(flat.narrow(0, offset, p.numel()));
    offset += p.numel();
  }
}

/// Every rank's copy of `t` (same shape everywhere), in rank order.
inline std::vector<at::Tensor> gatherAll(dist::Communicator& comm, const at::Tensor& t) {
  const at::Tensor flat = t.contiguous().reshape(-1);
  at::Tensor out = at::empty({comm.size() * flat.numel()}, flat.options());
  comm.allGather(flat, out)->wait();
  return out.view({comm.size(), flat.numel()}).unbind(0);
}

/// True when every rank holds the same bytes in `t`.
inline bool identicalOnAllRanks(dist::Communicator& comm, const at::Tensor& t) {
  const at::Tensor bytes = t.contiguous().reshape(-1).view(at::kByte);
  for (const at::Tensor& other : gatherAll(comm, bytes)) {
    if (!at::equal(other, bytes)) return false;
  }
  return true;
}

/// A communicator over every rank of `comm`, for an outer optimizer to own
/// (it may exchange on a background thread while the test uses `comm`).
inline std::unique_ptr<dist::Communicator> splitAll(dist::Communicator& comm) {
  std::vector<int> all(static_cast<size_t>(comm.size()));
  std::iota(all.begin(), all.end(), 0);
  return comm.split(all);
}

inline OuterOptions noloco(int64_t sync_every, double lr, double momentum, double consensus, int64_t group_size) {
  OuterOptions o;
  o.algorithm = OuterAlgorithm::kNoLoCo;
  o.sync_every = sync_every;
  o.lr = lr;
  o.momentum = momentum;
  o.consensus = consensus;
  o.group_size = group_size;
  return o;
}

inline OuterOptions diloco(int64_t sync_every, double lr, double momentum, bool nesterov = true) {
  OuterOptions o;
  o.algorithm = OuterAlgorithm::kDiLoCo;
  o.sync_every = sync_every;
  o.lr = lr;
  o.momentum = momentum;
  o.nesterov = nesterov;
  return o;
}

}  // namespace loom::optim::outer::test
