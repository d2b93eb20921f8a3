// Communicators for the context-parallel groups the HDP planner uses
// (parallel/hdp_plan.h): one per aligned power-of-two block of the pool's
// ranks, [k*c, (k+1)*c) for c = 1, 2, 4, ... <= pool, split once up front, so
// that no training step creates a communicator.
#pragma once

#include "runtime/dist/communicator.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

namespace loom::parallel {

class GroupCache {
 public:
  /// Collective over `pool`: every rank splits the blocks that contain it,
  /// smallest first (1 + log2 communicators per rank). `pool` must outlive the cache.
  explicit GroupCache(dist::Communicator& pool);
  /// The same, with blocks of two or more ranks made by `split` (ranks of the
  /// pool, ascending), which owns what it returns: an elastic job's world
  /// splits, so that its groups are aborted and retired with the generation.
  GroupCache(dist::Communicator& pool, const std::function<dist::Communicator&(const std::vector<int>&)>& split);

  /// The communicator of block [first_rank, first_rank + ranks), which must
  /// contain this rank and be an aligned power-of-two block of the pool.
  dist::Communicator& group(int first_rank, int ranks);

  int rank() const { return rank_; }
  /// Bytes this rank sent and received over all its groups so far.
  int64_t bytesSent() const;
  int64_t bytesReceived() const;
  int size() const { return size_; }

 private:
  int rank_;
  int size_;
  std::map<std::pair<int, int>, dist::Communicator*> groups_;  // (first, ranks) -> group
  std::vector<std::unique_ptr<dist::Communicator>> owned_;
};

}  // namespace loom::parallel
