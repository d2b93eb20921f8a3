#include "elastic/snapshot.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <string_view>

namespace loom::elastic {
namespace {

constexpr int64_t kAlignBytes = 64;
constexpr uint64_t kSnapshotSeed = 0x6C6F6F6D536E6170ULL;  // "loomSnap"
constexpr int64_t kWireMagic = 0x6C6F6F6D42756479LL;       // "loomBudy"
constexpr int64_t kWireVersion = 1;
constexpr int64_t kFixedHeaderWords = 9;               // see encodeHeader()
constexpr int64_t kMaxHeaderWords = int64_t{1} << 28;  // 2 GiB of header: surely corrupt
constexpr const char* kRngName = "<rng state>";

int64_t alignUp(int64_t n) {
  return (n + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
}

int64_t numelOf(const std::vector<int64_t>& sizes) {
  int64_t numel = 1;
  for (int64_t size : sizes) numel *= size;
  return numel;
}

std::string describe(const at::Tensor& tensor) {
  return c10::str(tensor.scalar_type(), " ", tensor.sizes());
}

void waitBoth(std::unique_ptr<dist::Work>& recv, std::unique_ptr<dist::Work>& send) {
  recv->wait();
  send->wait();
}

}  // namespace

// ---------------------------------------------------------------------------
// Snapshot

void Snapshot::layOut(int rank, int64_t step, int64_t data_cursor, const std::vector<TensorSpec>& specs,
                      int64_t rng_bytes) {
  complete_ = false;
  rank_ = rank;
  step_ = step;
  data_cursor_ = data_cursor;
  std::vector<int64_t> offsets;
  offsets.reserve(specs.size());
  int64_t offset = 0;
  for (const TensorSpec& spec : specs) {
    offsets.push_back(offset);
    offset = alignUp(offset + numelOf(spec.sizes) * static_cast<int64_t>(c10::elementSize(spec.dtype)));
  }
  const int64_t rng_offset = offset;
  used_bytes_ = rng_offset + rng_bytes;

  const bool reallocated = !arena_.defined() || arena_.numel() < used_bytes_;
  if (reallocated) arena_ = at::empty({used_bytes_}, at::kByte);

  bool same_layout = !reallocated && tensors_.size() == specs.size();
  for (size_t i = 0; same_layout && i < specs.size(); ++i) {
    const at::Tensor& view = tensors_[i].second;
    same_layout = tensors_[i].first == specs[i].name && view.scalar_type() == specs[i].dtype &&
                  view.sizes() == at::IntArrayRef(specs[i].sizes);
  }
  if (!same_layout) {
    tensors_.clear();
    for (size_t i = 0; i < specs.size(); ++i) {
      const TensorSpec& spec = specs[i];
      const int64_t nbytes = numelOf(spec.sizes) * static_cast<int64_t>(c10::elementSize(spec.dtype));
      tensors_.emplace_back(spec.name, arena_.narrow(0, offsets[i], nbytes).view(spec.dtype).view(spec.sizes));
    }
  }
  if (!same_layout || rng_state_.numel() != rng_bytes) rng_state_ = arena_.narrow(0, rng_offset, rng_bytes);
  checksums_.assign(specs.size(), 0);
  rng_checksum_ = 0;
}

void Snapshot::fillFrom(int64_t step, const RankState& state) {
  std::vector<TensorSpec> specs;
  specs.reserve(state.tensors.size());
  std::vector<std::string_view> names;
  names.reserve(state.tensors.size());
  for (const auto& [name, tensor] : state.tensors) {
    LOOM_CHECK_INPUT(tensor.defined(), "snapshot capture (rank ", state.rank, ", step ", step, "): tensor '", name,
                     "' is undefined");
    specs.push_back({name, tensor.scalar_type(), tensor.sizes().vec()});
    names.emplace_back(name);
  }
  std::sort(names.begin(), names.end());
  const auto duplicate = std::adjacent_find(names.begin(), names.end());
  LOOM_CHECK_INPUT(duplicate == names.end(), "snapshot capture (rank ", state.rank, ", step ", step,
                   "): two tensors are named '", duplicate == names.end() ? "" : *duplicate, "'; names must be unique");
  const at::Tensor& rng = state.rng_state;
  LOOM_CHECK_INPUT(!rng.defined() || rng.scalar_type() == at::kByte, "snapshot capture (rank ", state.rank, ", step ",
                   step, "): the RNG state is ", rng.defined() ? rng.scalar_type() : at::kByte,
                   "; pass the uint8 bytes of at::Generator::get_state()");

  layOut(state.rank, step, state.data_cursor, specs, rng.defined() ? rng.numel() : 0);
  // Tensor by tensor, so a tensor that cannot be copied fails midway: the
  // buffer is then partly overwritten and stays incomplete (SnapshotStore keeps
  // the previous one).
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    const auto& [name, src] = state.tensors[i];
    LOOM_CHECK_INPUT(src.device().is_cpu(), "snapshot capture (rank ", state.rank, ", step ", step, "): tensor '", name,
                     "' is on ", src.device(), "; snapshots take CPU tensors: copy it to the CPU first (", i, " of ",
                     state.tensors.size(), " tensors were copied; the previous snapshot is kept)");
    checksums_[i] = copyWithChecksum(src, tensors_[i].second);
  }
  rng_checksum_ = rng.defined() ? copyWithChecksum(rng.reshape({-1}), rng_state_) : tensorChecksum(rng_state_);
}

uint64_t Snapshot::checksum() const {
  uint64_t h = kSnapshotSeed;
  h = checksumFold(h, static_cast<uint64_t>(rank_));
  h = checksumFold(h, static_cast<uint64_t>(step_));
  h = checksumFold(h, static_cast<uint64_t>(data_cursor_));
  for (size_t i = 0; i < tensors_.size(); ++i) {
    h = checksumFold(h, xxHash64(tensors_[i].first.data(), tensors_[i].first.size()));
    h = checksumFold(h, checksums_[i]);
  }
  h = checksumFold(h, rng_checksum_);
  return checksumFinish(checksumFold(h, tensors_.size()));
}

namespace {

void checkIntact(const Snapshot& snapshot, const std::string& name, const at::Tensor& tensor, uint64_t expected) {
  const uint64_t actual = tensorChecksum(tensor);
  if (actual != expected) {
    LOOM_THROW(c10::Error, "snapshot of rank ", snapshot.rank(), " at step ", snapshot.step(), ": tensor '", name,
               "' (", describe(tensor), ") has checksum ", checksumHex(actual), " but ", checksumHex(expected),
               " was recorded at capture: the snapshot is corrupt; restore from another replica or the last "
               "checkpoint");
  }
}

}  // namespace

void Snapshot::verify() const {
  LOOM_CHECK(complete_, "snapshot of rank ", rank_, " is not complete (never written, or its last write failed)");
  for (size_t i = 0; i < tensors_.size(); ++i) checkIntact(*this, tensors_[i].first, tensors_[i].second, checksums_[i]);
  checkIntact(*this, kRngName, rng_state_, rng_checksum_);
}

void Snapshot::restoreInto(const NamedTensors& live) const {
  LOOM_CHECK(complete_, "restoreInto: the snapshot of rank ", rank_, " is not complete");
  LOOM_CHECK_INPUT(live.size() == tensors_.size(), "restoreInto: the snapshot of rank ", rank_, " at step ", step_,
                   " has ", tensors_.size(), " tensors but ", live.size(), " were given");
  for (size_t i = 0; i < live.size(); ++i) {
    const auto& [name, target] = live[i];
    const at::Tensor& source = tensors_[i].second;
    const bool matches = name == tensors_[i].first && target.defined() &&
                         target.scalar_type() == source.scalar_type() && target.sizes() == source.sizes();
    LOOM_CHECK_INPUT(matches, "restoreInto: tensor ", i, " is '", name, "' (",
                     target.defined() ? describe(target) : std::string("undefined"), ") but the snapshot holds '",
                     tensors_[i].first, "' (", describe(source), ")");
  }
  for (size_t i = 0; i < live.size(); ++i) {
    at::Tensor target = live[i].second;
    target.copy_(tensors_[i].second);
  }
}

// ---------------------------------------------------------------------------
// SnapshotStore

const Snapshot& SnapshotStore::write(const std::function<void(Snapshot& spare)>& fill) {
  const int spare_index = latest_ == 0 ? 1 : 0;
  Snapshot& spare = buffers_[spare_index];
  spare.complete_ = false;
  fill(spare);
  spare.complete_ = true;
  latest_ = spare_index;
  return spare;
}

const Snapshot& SnapshotStore::capture(int64_t step, const RankState& state) {
  return write([&](Snapshot& spare) { spare.fillFrom(step, state); });
}

const Snapshot& SnapshotStore::latest() const {
  LOOM_CHECK_INPUT(hasSnapshot(), "SnapshotStore::latest: no snapshot has been written yet");
  return buffers_[latest_];
}

// ---------------------------------------------------------------------------
// Buddy replication

const Snapshot* SnapshotStore::at(int64_t step) const {
  if (latest_ < 0) return nullptr;
  // Newest first: after a rollback both buffers may hold the same step.
  for (const int i : {latest_, 1 - latest_}) {
    const Snapshot& buffer = buffers_[static_cast<size_t>(i)];
    if (buffer.complete() && buffer.step() == step) return &buffer;
  }
  return nullptr;
}

std::array<int64_t, 2> SnapshotStore::steps() const {
  if (latest_ < 0) return {-1, -1};
  const Snapshot& newest = buffers_[static_cast<size_t>(latest_)];
  const Snapshot& other = buffers_[static_cast<size_t>(1 - latest_)];
  return {newest.step(), other.complete() ? other.step() : -1};
}

int buddyOf(int rank, int world_size) {
  LOOM_CHECK_INPUT(world_size >= 1 && rank >= 0 && rank < world_size, "buddyOf: rank ", rank, " is not in a world of ",
                   world_size);
  return (rank + 1) % world_size;
}

int buddySourceOf(int rank, int world_size) {
  LOOM_CHECK_INPUT(world_size >= 1 && rank >= 0 && rank < world_size, "buddySourceOf: rank ", rank,
                   " is not in a world of ", world_size);
  return (rank + world_size - 1) % world_size;
}

// The wire format of a snapshot: an int64 header, then the snapshot's bytes
// (its buffer's first bytes() bytes) in one message. Header words:
//   magic, version, rank, step, data cursor, tensor count, RNG bytes, RNG
//   checksum, bytes(); per tensor: dtype, ndim, sizes..., checksum, name length;
//   the names' bytes packed 8 per word; xxHash64 of all the words before it.
struct SnapshotAccess {
  static at::Tensor encodeHeader(const Snapshot& s) {
    std::vector<int64_t> words = {kWireMagic,
                                  kWireVersion,
                                  s.rank_,
                                  s.step_,
                                  s.data_cursor_,
                                  static_cast<int64_t>(s.tensors_.size()),
                                  s.rng_state_.numel(),
                                  static_cast<int64_t>(s.rng_checksum_),
                                  s.used_bytes_};
    std::string names;
    for (size_t i = 0; i < s.tensors_.size(); ++i) {
      const auto& [name, view] = s.tensors_[i];
      words.push_back(static_cast<int64_t>(view.scalar_type()));
      words.push_back(view.dim());
      for (int64_t size : view.sizes()) words.push_back(size);
      words.push_back(static_cast<int64_t>(s.checksums_[i]));
      words.push_back(static_cast<int64_t>(name.size()));
      names += name;
    }
    const size_t name_words = (names.size() + 7) / 8;
    const size_t first_name_word = words.size();
    words.resize(words.size() + name_words + 1, 0);
    if (!names.empty()) std::memcpy(words.data() + first_name_word, names.data(), names.size());
    words.back() = static_cast<int64_t>(xxHash64(words.data(), (words.size() - 1) * sizeof(int64_t)));
    at::Tensor header = at::empty({static_cast<int64_t>(words.size())}, at::kLong);
    std::memcpy(header.data_ptr<int64_t>(), words.data(), words.size() * sizeof(int64_t));
    return header;
  }

  // Lays `spare` out as the header from rank `src` describes, with the
  // checksums the sender recorded (so verify() compares against them).
  static void decodeHeader(const at::Tensor& header, int src, Snapshot& spare) {
    const int64_t* w = header.data_ptr<int64_t>();
    const int64_t n = header.numel();
    const uint64_t expected = static_cast<uint64_t>(w[n - 1]);
    const uint64_t actual = xxHash64(w, static_cast<size_t>(n - 1) * sizeof(int64_t));
    if (actual != expected) {
      LOOM_THROW(c10::Error, "replicateToBuddy: the snapshot header from rank ", src, " has checksum ",
                 checksumHex(actual), " but carries ", checksumHex(expected), ": it was corrupted in transit");
    }
    int64_t at = 0;
    auto next = [&]() -> int64_t {
      LOOM_CHECK(at < n - 1, "replicateToBuddy: the snapshot header from rank ", src, " is truncated (", n, " words)");
      return w[at++];
    };
    LOOM_CHECK(next() == kWireMagic && next() == kWireVersion, "replicateToBuddy: rank ", src,
               " sent a snapshot header of another format or version");
    const int rank = static_cast<int>(next());
    const int64_t step = next();
    const int64_t data_cursor = next();
    const int64_t count = next();
    const int64_t rng_bytes = next();
    const uint64_t rng_checksum = static_cast<uint64_t>(next());
    const int64_t used_bytes = next();
    LOOM_CHECK(count >= 0 && count < n && rng_bytes >= 0, "replicateToBuddy: bad snapshot header from rank ", src);
    std::vector<Snapshot::TensorSpec> specs(static_cast<size_t>(count));
    std::vector<uint64_t> checksums(specs.size());
    std::vector<int64_t> name_lengths(specs.size());
    int64_t name_bytes = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      const int64_t dtype = next();
      LOOM_CHECK(dtype >= 0 && dtype < static_cast<int64_t>(at::ScalarType::NumOptions), "replicateToBuddy: bad dtype ",
                 dtype, " in the snapshot header from rank ", src);
      specs[i].dtype = static_cast<at::ScalarType>(dtype);
      const int64_t ndim = next();
      LOOM_CHECK(ndim >= 0 && ndim < n, "replicateToBuddy: bad ndim in the snapshot header from rank ", src);
      for (int64_t d = 0; d < ndim; ++d) {
        specs[i].sizes.push_back(next());
        LOOM_CHECK(specs[i].sizes.back() >= 0, "replicateToBuddy: negative size from rank ", src);
      }
      checksums[i] = static_cast<uint64_t>(next());
      name_lengths[i] = next();
      LOOM_CHECK(name_lengths[i] >= 0 && name_lengths[i] <= 8 * n, "replicateToBuddy: bad name length from rank ", src);
      name_bytes += name_lengths[i];
    }
    LOOM_CHECK(at + (name_bytes + 7) / 8 == n - 1, "replicateToBuddy: the snapshot header from rank ", src, " has ", n,
               " words, not the ", at + (name_bytes + 7) / 8 + 1, " it describes");
    const char* name_data = reinterpret_cast<const char*>(w + at);
    for (size_t i = 0; i < specs.size(); ++i) {
      specs[i].name.assign(name_data, static_cast<size_t>(name_lengths[i]));
      name_data += name_lengths[i];
    }
    spare.layOut(rank, step, data_cursor, specs, rng_bytes);
    LOOM_CHECK(spare.used_bytes_ == used_bytes, "replicateToBuddy: rank ", src, " sends ", used_bytes,
               " bytes but its header lays out ", spare.used_bytes_);
    spare.checksums_ = std::move(checksums);
    spare.rng_checksum_ = rng_checksum;
  }

  static at::Tensor bytesOf(const Snapshot& s) { return s.arena_.narrow(0, 0, s.used_bytes_); }

  // verify() without the complete() check: the store marks it complete after.
  static void verifyReceived(Snapshot& s) {
    s.complete_ = true;
    try {
      s.verify();
    } catch (...) {
      s.complete_ = false;
      throw;
    }
  }
};

void replicateToBuddy(dist::Communicator& comm, const Snapshot& mine, SnapshotStore& buddy_store,
                      const ReplicationOptions& opts) {
  const int world = comm.size();
  const int rank = comm.rank();
  LOOM_CHECK_INPUT(world >= 2, "replicateToBuddy: a world of ", world,
                   " rank has no buddy; snapshots protect against lost ranks only with 2 or more");
  LOOM_CHECK_INPUT(mine.complete(), "replicateToBuddy: rank ", rank, "'s snapshot is not complete");
  LOOM_CHECK_INPUT(opts.tag_base >= 0, "replicateToBuddy: tag_base ", opts.tag_base, " must be >= 0");
  const int dst = buddyOf(rank, world);
  const int src = buddySourceOf(rank, world);

  // 1. Header sizes.
  const at::Tensor my_header = SnapshotAccess::encodeHeader(mine);
  const at::Tensor my_preface = at::empty({2}, at::kLong);
  my_preface.data_ptr<int64_t>()[0] = kWireMagic;
  my_preface.data_ptr<int64_t>()[1] = my_header.numel();
  at::Tensor their_preface = at::empty({2}, at::kLong);
  auto recv = comm.recv(their_preface, src, opts.tag_base, opts.op);
  auto send = comm.send(my_preface, dst, opts.tag_base, opts.op);
  waitBoth(recv, send);
  const int64_t header_words = their_preface.data_ptr<int64_t>()[1];
  LOOM_CHECK(their_preface.data_ptr<int64_t>()[0] == kWireMagic && header_words > kFixedHeaderWords &&
                 header_words <= kMaxHeaderWords,
             "replicateToBuddy: rank ", src, " sent a malformed snapshot preface (", header_words, " header words)");

  // 2. Headers.
  at::Tensor their_header = at::empty({header_words}, at::kLong);
  recv = comm.recv(their_header, src, opts.tag_base + 1, opts.op);
  send = comm.send(my_header, dst, opts.tag_base + 1, opts.op);
  waitBoth(recv, send);

  // 3. The bytes, straight into the buddy store's spare buffer; committed once verified.
  buddy_store.write([&](Snapshot& spare) {
    SnapshotAccess::decodeHeader(their_header, src, spare);
    at::Tensor inbox = SnapshotAccess::bytesOf(spare);
    recv = comm.recv(inbox, src, opts.tag_base + 2, opts.op);
    send = comm.send(SnapshotAccess::bytesOf(mine), dst, opts.tag_base + 2, opts.op);
    waitBoth(recv, send);
    if (opts.on_received) opts.on_received(inbox);
    SnapshotAccess::verifyReceived(spare);
  });
}

const Snapshot& restoreFromBuddy(const SnapshotStore& buddy_store, int rank) {
  LOOM_CHECK_INPUT(buddy_store.hasSnapshot(), "restoreFromBuddy: the buddy store holds no snapshot, so not rank ", rank,
                   "'s");
  const Snapshot& held = buddy_store.latest();
  LOOM_CHECK_INPUT(held.rank() == rank, "restoreFromBuddy: the buddy store holds rank ", held.rank(),
                   "'s snapshot (step ", held.step(), "), not rank ", rank, "'s; rank ", rank,
                   "'s is held by its buddy");
  held.verify();
  return held;
}

}  // namespace loom::elastic
