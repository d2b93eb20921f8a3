#include "train/elastic_session.h"

#include "elastic/state_broadcast.h"
#include "elastic/tensor_checksum.h"
#include "optim/parameter_optimizer.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <map>

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;

// One row per member in restore()'s all-gather.
enum Column : int64_t {
  kId,
  kHasState,     // 1: a survivor holding snapshots; 0: a joiner
  kOwnLatest,    // steps of its own snapshots (-1: none)
  kOwnPrevious,
  kHeldId,       // whose shard its buddy store holds (-1: none)
  kHeldLatest,
  kHeldPrevious,
  kColumns
};

std::string describeIds(const std::vector<int>& ids) {
  std::string out;
  for (int id : ids) out += (out.empty() ? "" : ", ") + std::to_string(id);
  return out;
}

NamedTensors cloneAll(const NamedTensors& tensors) {
  NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.clone());
  return out;
}

// The optimizer tensor names of a sharded AdamW in a fixed order, and the
// chunk each one has in a world of `world` ranks.
std::vector<std::pair<std::string, int64_t>> shardLayout(const NamedTensors& params, int64_t world) {
  std::vector<std::pair<std::string, int64_t>> layout;
  for (const char* prefix : {"exp_avg.", "exp_avg_sq."}) {
    for (const auto& [name, p] : params) layout.emplace_back(prefix + name, (p.numel() + world - 1) / world);
  }
  return layout;
}

}  // namespace

ElasticSession::ElasticSession(elastic::ElasticWorld& world, bool sharded, const Logger& log)
    : world_(world), sharded_(sharded), log_(log) {}

ElasticSession::~ElasticSession() {
  if (!replication_.valid()) return;
  try {
    replication_.get();
  } catch (const std::exception&) {
    // The run is over (or failing for another reason): a lost copy no longer matters.
  }
}

void ElasticSession::captureCommitted(int64_t step, const LiveState& live) {
  // Off the critical path: the next step's forward and backward only read what
  // is captured, and awaitReplication() (before its commit vote, so before its
  // optimizer step writes parameters and moments) waits for this.
  LOOM_CHECK(!replication_.valid(), "elastic: a snapshot was started before the previous one was awaited");
  const bool replicate = sharded_ && world_.main().size() > 1;
  dist::Communicator* comm = replicate ? &world_.replication() : nullptr;
  replication_ = std::async(std::launch::async, [this, step, live, comm] {
    const auto start = Clock::now();
    elastic::RankState params;
    params.rank = world_.id();
    params.tensors = live.params;
    params.data_cursor = live.data_cursor;
    params.rng_state = live.rng_state;
    params_.capture(step, params);
    elastic::RankState optimizer;
    optimizer.rank = world_.id();
    optimizer.tensors = live.optimizer;
    optimizer.data_cursor = live.data_cursor;
    const elastic::Snapshot& mine = shard_.capture(step, optimizer);
    last_capture_ms_.store(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    if (comm != nullptr) replicateToBuddy(*comm, mine, buddy_);
  });
}

void ElasticSession::awaitReplication() {
  if (replication_.valid()) replication_.get();
}

RestoredState ElasticSession::restore(const elastic::GenerationChange& change, const NamedTensors& params,
                                      dist::Communicator& replica) {
  if (replication_.valid()) {
    try {
      replication_.get();
    } catch (const std::exception&) {
      // Aborted with the old generation; the buddy store kept its last verified copy.
    }
  }
  dist::Communicator& comm = world_.main();
  const int size = comm.size();
  const bool has_state = params_.hasSnapshot();
  at::Tensor mine = at::full({kColumns}, -1, at::kLong);
  auto* row = mine.data_ptr<int64_t>();
  row[kId] = world_.id();
  row[kHasState] = has_state ? 1 : 0;
  if (has_state) {
    const auto own = params_.steps();
    row[kOwnLatest] = own[0];
    row[kOwnPrevious] = own[1];
  }
  if (buddy_.hasSnapshot()) {
    const auto held = buddy_.steps();
    row[kHeldId] = buddy_.latest().rank();
    row[kHeldLatest] = held[0];
    row[kHeldPrevious] = held[1];
  }
  at::Tensor table = at::empty({size * kColumns}, at::kLong);
  comm.allGather(mine, table)->wait();
  const auto* rows = table.data_ptr<int64_t>();
  auto cell = [&](int r, Column c) { return rows[r * kColumns + c]; };

  // The old membership comes from the lowest-ranked survivor (the donor):
  // joiners did not see it.
  int donor = -1;
  for (int r = 0; r < size && donor < 0; ++r) {
    if (cell(r, kHasState) == 1) donor = r;
  }
  if (donor < 0) throw UnrecoverableStateError("elastic: no member of " + world_.membership().describe() +
                                               " holds a snapshot: every worker that trained was lost");
  at::Tensor old_count = at::full({1}, static_cast<int64_t>(change.previous.members.size()), at::kLong);
  comm.broadcast(old_count, donor)->wait();
  at::Tensor old_members = at::zeros({old_count.item<int64_t>()}, at::kLong);
  if (comm.rank() == donor) {
    for (size_t i = 0; i < change.previous.members.size(); ++i) {
      old_members[static_cast<int64_t>(i)] = change.previous.members[i];
    }
  }
  comm.broadcast(old_members, donor)->wait();
  const int64_t old_world = old_members.numel();
  std::vector<int> old_ids(static_cast<size_t>(old_world));
  for (int64_t p = 0; p < old_world; ++p) old_ids[static_cast<size_t>(p)] = static_cast<int>(old_members[p].item<int64_t>());

  // Where each old shard is held, and the newest step everything is held at.
  int64_t step = std::numeric_limits<int64_t>::max();
  for (int r = 0; r < size; ++r) {
    if (cell(r, kHasState) == 1) step = std::min(step, cell(r, kOwnLatest));
  }
  std::vector<int> source(static_cast<size_t>(old_world), -1);  // new rank serving old position p
  std::vector<bool> from_buddy(static_cast<size_t>(old_world), false);
  if (sharded_) {
    std::vector<int> lost_without_copy;
    for (int64_t p = 0; p < old_world; ++p) {
      const int id = old_ids[static_cast<size_t>(p)];
      for (int r = 0; r < size && source[static_cast<size_t>(p)] < 0; ++r) {
        if (cell(r, kId) == id && cell(r, kHasState) == 1) source[static_cast<size_t>(p)] = r;
      }
      for (int r = 0; r < size && source[static_cast<size_t>(p)] < 0; ++r) {
        if (cell(r, kHeldId) == id) {
          source[static_cast<size_t>(p)] = r;
          from_buddy[static_cast<size_t>(p)] = true;
          step = std::min(step, cell(r, kHeldLatest));
        }
      }
      if (source[static_cast<size_t>(p)] < 0) lost_without_copy.push_back(id);
    }
    if (!lost_without_copy.empty()) {
      const int buddy = old_ids[static_cast<size_t>(
          (std::find(old_ids.begin(), old_ids.end(), lost_without_copy.front()) - old_ids.begin() + 1) % old_world)];
      throw UnrecoverableStateError(
          "elastic: the ZeRO-1 optimizer shard of worker(s) " + describeIds(lost_without_copy) +
          " is lost: worker " + std::to_string(lost_without_copy.front()) + " and its buddy, worker " +
          std::to_string(buddy) + ", which held the only copy, were both lost (" + change.previous.describe() +
          " -> " + change.current.describe() + ")");
    }
  }
  // Every holder must still have that step (each keeps two).
  for (int r = 0; r < size; ++r) {
    if (cell(r, kHasState) == 1 && cell(r, kOwnLatest) != step && cell(r, kOwnPrevious) != step) {
      throw UnrecoverableStateError("elastic: worker " + std::to_string(cell(r, kId)) + " holds steps " +
                                    std::to_string(cell(r, kOwnLatest)) + " and " +
                                    std::to_string(cell(r, kOwnPrevious)) + " but step " + std::to_string(step) +
                                    " is needed: the members are more than one step apart");
    }
  }
  for (int64_t p = 0; p < old_world; ++p) {
    const int r = source[static_cast<size_t>(p)];
    if (from_buddy[static_cast<size_t>(p)] && cell(r, kHeldLatest) != step && cell(r, kHeldPrevious) != step) {
      throw UnrecoverableStateError("elastic: the copy of worker " + std::to_string(old_ids[static_cast<size_t>(p)]) +
                                    "'s shard lacks step " + std::to_string(step));
    }
  }

  RestoredState restored;
  restored.step = step;
  bool joiners = false;
  for (int r = 0; r < size; ++r) joiners = joiners || cell(r, kHasState) == 0;
  // Joiners take the state of their replica's lowest-ranked survivor.
  int replica_donor = -1;
  if (joiners) {
    at::Tensor held = at::full({1}, has_state ? 1 : 0, at::kLong);
    at::Tensor all = at::empty({replica.size()}, at::kLong);
    replica.allGather(held, all)->wait();
    for (int r = 0; r < replica.size() && replica_donor < 0; ++r) {
      if (all[r].item<int64_t>() == 1) replica_donor = r;
    }
    LOOM_CHECK(replica_donor >= 0, "elastic: a replica of ", world_.membership().describe(),
               " has no member that holds its state");
  }
  if (has_state) {
    const elastic::Snapshot* own = params_.at(step);
    own->verify();
    restored.params = cloneAll(own->tensors());
    restored.rng_state = own->rngState().clone();
    restored.data_cursor = own->dataCursor();
  } else {
    restored.params = cloneAll(params);
  }
  if (joiners) {
    // Survivors of a replica agree bit for bit already; joiners take the donor's.
    for (auto& [name, t] : restored.params) replica.broadcast(t, replica_donor)->wait();
    at::Tensor meta = at::full({2}, -1, at::kLong);
    if (replica.rank() == replica_donor) {
      meta[0] = restored.data_cursor;
      meta[1] = restored.rng_state.numel();
    }
    replica.broadcast(meta, replica_donor)->wait();
    restored.data_cursor = meta[0].item<int64_t>();
    if (!has_state) restored.rng_state = at::empty({meta[1].item<int64_t>()}, at::kByte);
    replica.broadcast(restored.rng_state, replica_donor)->wait();
  }

  if (!sharded_) {
    // Replicated AdamW (and an outer optimizer's state): every survivor holds it all.
    if (has_state) {
      const elastic::Snapshot* own = shard_.at(step);
      own->verify();
      restored.optimizer = cloneAll(own->tensors());
    }
    if (joiners) restored.optimizer = elastic::broadcastNamedTensors(replica, restored.optimizer, replica_donor);
    checkAgreement(restored, replica);
    return restored;
  }

  // ZeRO-1: one broadcast per old shard, from its owner or its buddy.
  const auto layout = shardLayout(params, old_world);
  int64_t flat_numel = 0;
  for (const auto& [name, chunk] : layout) flat_numel += chunk;
  std::vector<NamedTensors> shards;
  for (int64_t p = 0; p < old_world; ++p) {
    const int r = source[static_cast<size_t>(p)];
    at::Tensor flat = at::empty({flat_numel}, at::kFloat);
    if (comm.rank() == r) {
      const elastic::Snapshot* held =
          from_buddy[static_cast<size_t>(p)] ? buddy_.at(step) : shard_.at(step);
      LOOM_CHECK(held != nullptr, "elastic: snapshot of step ", step, " vanished");
      held->verify();
      std::map<std::string, at::Tensor> by_name(held->tensors().begin(), held->tensors().end());
      int64_t offset = 0;
      for (const auto& [name, chunk] : layout) {
        const auto it = by_name.find(name);
        LOOM_CHECK(it != by_name.end() && it->second.numel() == chunk, "elastic: shard snapshot of worker ",
                   old_ids[static_cast<size_t>(p)], " lacks ", name, " with ", chunk, " elements");
        flat.narrow(0, offset, chunk).copy_(it->second.reshape({-1}));
        offset += chunk;
      }
    }
    comm.broadcast(flat, r)->wait();
    NamedTensors shard;
    int64_t offset = 0;
    for (const auto& [name, chunk] : layout) {
      shard.emplace_back(name, flat.narrow(0, offset, chunk));
      offset += chunk;
    }
    shards.push_back(std::move(shard));
  }
  restored.optimizer = optim::assembleShardedState(params, shards);
  checkAgreement(restored, replica);
  return restored;
}

void ElasticSession::checkAgreement(RestoredState& restored, dist::Communicator& comm) {
  // Names sorted: replicated and reassembled states list tensors in different orders.
  NamedTensors optimizer = restored.optimizer;
  std::sort(optimizer.begin(), optimizer.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const uint64_t hash =
      elastic::checksumFinish(elastic::checksumFold(elastic::stateChecksum(restored.params), elastic::stateChecksum(optimizer)));
  restored.state_hash = hash;
  at::Tensor mine = at::full({1}, static_cast<int64_t>(hash), at::kLong);
  at::Tensor all = at::empty({comm.size()}, at::kLong);
  comm.allGather(mine, all)->wait();
  for (int r = 0; r < comm.size(); ++r) {
    LOOM_CHECK(static_cast<uint64_t>(all[r].item<int64_t>()) == hash, "elastic: after restoring step ", restored.step,
               " rank ", comm.rank(), " holds state ", elastic::checksumHex(hash), " but rank ", r, " holds ",
               elastic::checksumHex(static_cast<uint64_t>(all[r].item<int64_t>())), " in ",
               world_.membership().describe());
  }
}

}  // namespace loom::train
