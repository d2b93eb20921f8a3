#include "parallel/group_cache.h"

#include "runtime/core/error.h"

#include <vector>

namespace loom::parallel {

GroupCache::GroupCache(dist::Communicator& pool)
    : GroupCache(pool, [this, &pool](const std::vector<int>& members) -> dist::Communicator& {
        owned_.push_back(pool.split(members));
        return *owned_.back();
      }) {}

GroupCache::GroupCache(dist::Communicator& pool,
                       const std::function<dist::Communicator&(const std::vector<int>&)>& split)
    : rank_(pool.rank()), size_(pool.size()) {
  for (int ranks = 1; ranks <= size_; ranks *= 2) {
    const int first = rank_ / ranks * ranks;
    if (first + ranks > size_) break;  // larger aligned blocks would not fit either
    if (ranks == 1) {
      owned_.push_back(dist::makeSelfCommunicator(pool.options()));
      groups_.emplace(std::make_pair(first, 1), owned_.back().get());
      continue;
    }
    std::vector<int> members;
    for (int r = first; r < first + ranks; ++r) members.push_back(r);
    groups_.emplace(std::make_pair(first, ranks), &split(members));
  }
}

int64_t GroupCache::bytesSent() const {
  int64_t bytes = 0;
  for (const auto& [block, comm] : groups_) bytes += comm->bytesSent();
  return bytes;
}

int64_t GroupCache::bytesReceived() const {
  int64_t bytes = 0;
  for (const auto& [block, comm] : groups_) bytes += comm->bytesReceived();
  return bytes;
}

dist::Communicator& GroupCache::group(int first_rank, int ranks) {
  const auto it = groups_.find({first_rank, ranks});
  LOOM_CHECK(it != groups_.end(), "group cache: rank ", rank_, " of ", size_, " has no group [", first_rank, ", ",
             first_rank + ranks, "): not an aligned power-of-two block containing it");
  return *it->second;
}

}  // namespace loom::parallel
