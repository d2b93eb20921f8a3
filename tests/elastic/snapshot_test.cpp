// Snapshots and their checksums (parallel_elastic.md §6 test 19): checksums
// catch any flipped bit and tell shapes and dtypes apart; a capture is a deep,
// verified copy with commit semantics and reused buffers; buddy replication over
// 2..4 in-process ranks leaves each rank with its left neighbour's snapshot,
// byte-equal and verified, and catches corruption in transit.
#include "elastic/snapshot.h"
#include "elastic/tensor_checksum.h"
#include "runtime/core/error.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace loom::elastic {
namespace {

using ::testing::HasSubstr;

std::string errorOf(const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    return errorMessage(e);
  }
  return "(no exception)";
}

// Flips bit `bit` of byte `byte` of a contiguous CPU tensor, in place.
void flipBit(const at::Tensor& tensor, int64_t byte, int bit) {
  static_cast<unsigned char*>(tensor.data_ptr())[byte] ^= static_cast<unsigned char>(1u << bit);
}

// A rank's state whose values depend on (rank, step): parameters, moments, an int counter, an RNG state.
RankState stateOf(int rank, int64_t step) {
  // A private generator: ranks run as threads, so the global one would race.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(1000 * rank + step));
  RankState state;
  state.rank = rank;
  state.tensors = {{"embed.weight", at::randn({16, 8}, gen)},
                   {"layer.0.norm", at::randn({8}, gen)},
                   {"adam.m", at::randn({3, 5, 7}, gen, at::kDouble)},
                   {"adam.step", at::full({}, step, at::kLong)},
                   {"empty", at::empty({0, 4}, at::kBFloat16)}};
  state.data_cursor = 100 * step + rank;
  state.rng_state = at::randint(0, 256, {37}, gen, at::kByte);
  return state;
}

void expectHolds(const Snapshot& snapshot, const RankState& state, int64_t step) {
  ASSERT_TRUE(snapshot.complete());
  EXPECT_EQ(snapshot.rank(), state.rank);
  EXPECT_EQ(snapshot.step(), step);
  EXPECT_EQ(snapshot.dataCursor(), state.data_cursor);
  ASSERT_EQ(snapshot.tensors().size(), state.tensors.size());
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    EXPECT_EQ(snapshot.tensors()[i].first, state.tensors[i].first);
    EXPECT_TRUE(at::equal(snapshot.tensors()[i].second, state.tensors[i].second)) << state.tensors[i].first;
    EXPECT_EQ(snapshot.checksums()[i], tensorChecksum(state.tensors[i].second)) << state.tensors[i].first;
  }
  EXPECT_TRUE(at::equal(snapshot.rngState(), state.rng_state));
  EXPECT_NO_THROW(snapshot.verify());
}

// --- checksums -------------------------------------------------------------

TEST(ChecksumTest, XxHash64MatchesTheReferenceVectors) {
  EXPECT_EQ(xxHash64("", 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(xxHash64("abc", 3), 0x44BC2CF5AD770999ULL);
}

TEST(ChecksumTest, EqualTensorsHashEqual) {
  const at::Tensor a = at::randn({1000, 3});
  EXPECT_EQ(tensorChecksum(a), tensorChecksum(a.clone()));
  EXPECT_NE(tensorChecksum(a), tensorChecksum(a + 1));
}

TEST(ChecksumTest, AnyFlippedBitChangesIt) {
  // Sizes around the 32-byte stripe, the 8/4/1-byte tails and the 256 KiB chunk boundary.
  for (int64_t nbytes : {int64_t{1}, int64_t{7}, int64_t{31}, int64_t{100}, kChecksumChunkBytes + 13}) {
    const at::Tensor t = at::randint(0, 256, {nbytes}, at::kByte);
    const uint64_t clean = tensorChecksum(t);
    const int64_t stride = std::max<int64_t>(1, nbytes / 97);
    for (int64_t byte = 0; byte < nbytes; byte += stride) {
      for (int bit = 0; bit < 8; ++bit) {
        flipBit(t, byte, bit);
        EXPECT_NE(tensorChecksum(t), clean) << nbytes << " bytes, byte " << byte << " bit " << bit;
        flipBit(t, byte, bit);
      }
    }
    flipBit(t, nbytes - 1, 7);  // the very last bit
    EXPECT_NE(tensorChecksum(t), clean);
    flipBit(t, nbytes - 1, 7);
    EXPECT_EQ(tensorChecksum(t), clean);
  }
}

TEST(ChecksumTest, ShapeAndDtypeChangeIt) {
  const at::Tensor t = at::arange(24, at::kFloat);
  const uint64_t flat = tensorChecksum(t);
  EXPECT_NE(tensorChecksum(t.view({4, 6})), flat);
  EXPECT_NE(tensorChecksum(t.view({6, 4})), tensorChecksum(t.view({4, 6})));
  EXPECT_NE(tensorChecksum(t.view({1, 24})), flat);
  EXPECT_NE(tensorChecksum(t.view(at::kInt)), flat);  // same bytes, another dtype
  EXPECT_NE(tensorChecksum(at::zeros({}, at::kFloat)), tensorChecksum(at::zeros({1}, at::kFloat)));
}

TEST(ChecksumTest, NonContiguousEqualsItsContiguousCopy) {
  const at::Tensor t = at::randn({33, 17});
  EXPECT_FALSE(t.t().is_contiguous());
  EXPECT_EQ(tensorChecksum(t.t()), tensorChecksum(t.t().contiguous()));
  const at::Tensor strided = t.slice(1, 0, 17, 3);
  EXPECT_EQ(tensorChecksum(strided), tensorChecksum(strided.contiguous()));
}

TEST(ChecksumTest, EmptyTensors) {
  const uint64_t a = tensorChecksum(at::empty({0}));
  EXPECT_EQ(a, tensorChecksum(at::empty({0})));
  EXPECT_NE(a, tensorChecksum(at::empty({0, 3})));
  EXPECT_NE(a, tensorChecksum(at::empty({0}, at::kDouble)));
}

TEST(ChecksumTest, CopyWithChecksumEqualsCopyThenChecksum) {
  const at::Tensor src = at::randn({3 * kChecksumChunkBytes / 4 + 5});  // several chunks and a tail
  const at::Tensor dst = at::empty_like(src);
  EXPECT_EQ(copyWithChecksum(src, dst), tensorChecksum(src));
  EXPECT_TRUE(at::equal(src, dst));
  EXPECT_THAT(errorOf([&] { copyWithChecksum(src, at::empty({3})); }), HasSubstr("must be a contiguous tensor"));
}

TEST(ChecksumTest, StateChecksumSeesNamesOrderAndValues) {
  const at::Tensor a = at::randn({4});
  const at::Tensor b = at::randn({4});
  const uint64_t base = stateChecksum({{"a", a}, {"b", b}});
  EXPECT_EQ(base, stateChecksum({{"a", a.clone()}, {"b", b.clone()}}));
  EXPECT_NE(base, stateChecksum({{"b", b}, {"a", a}}));
  EXPECT_NE(base, stateChecksum({{"a", a}, {"c", b}}));
  EXPECT_NE(base, stateChecksum({{"a", a}}));
  EXPECT_NE(base, stateChecksum({{"a", a}, {"b", b + 1}}));
  EXPECT_NE(stateChecksum({{"ab", a}, {"", b}}), stateChecksum({{"a", a}, {"b", b}}));
}

TEST(ChecksumTest, RejectsUndefinedAndNonCpuTensors) {
  EXPECT_THROW(tensorChecksum(at::Tensor()), InputError);
  EXPECT_THROW(tensorChecksum(at::empty({2}, at::device(at::kMeta))), InputError);
}

// --- snapshots -------------------------------------------------------------

TEST(SnapshotTest, CaptureIsADeepCopy) {
  SnapshotStore store;
  RankState state = stateOf(0, 5);
  const RankState expected = stateOf(0, 5);
  const Snapshot& snapshot = store.capture(5, state);
  for (auto& [name, tensor] : state.tensors) tensor.add_(1);
  state.rng_state.zero_();
  expectHolds(snapshot, expected, 5);
  EXPECT_EQ(&store.latest(), &snapshot);
}

TEST(SnapshotTest, CapturesNonContiguousTensors) {
  SnapshotStore store;
  RankState state;
  const at::Tensor t = at::randn({6, 9});
  state.tensors = {{"t", t.t()}};
  const Snapshot& snapshot = store.capture(1, state);
  EXPECT_TRUE(at::equal(snapshot.tensors()[0].second, t.t()));
  EXPECT_TRUE(snapshot.tensors()[0].second.is_contiguous());
  EXPECT_EQ(snapshot.rngState().numel(), 0);
  EXPECT_NO_THROW(snapshot.verify());
}

TEST(SnapshotTest, VerifyNamesTheCorruptTensor) {
  SnapshotStore store;
  const Snapshot& snapshot = store.capture(3, stateOf(1, 3));
  flipBit(snapshot.tensors()[2].second, 17, 4);  // adam.m
  EXPECT_THAT(errorOf([&] { snapshot.verify(); }),
              HasSubstr("snapshot of rank 1 at step 3: tensor 'adam.m' (Double [3, 5, 7]) has checksum"));
  flipBit(snapshot.tensors()[2].second, 17, 4);
  EXPECT_NO_THROW(snapshot.verify());
  flipBit(snapshot.rngState(), 0, 0);
  EXPECT_THAT(errorOf([&] { snapshot.verify(); }), HasSubstr("tensor '<rng state>'"));
}

TEST(SnapshotTest, AFailedCaptureKeepsThePreviousSnapshot) {
  SnapshotStore store;
  EXPECT_THROW(store.latest(), InputError);
  store.capture(1, stateOf(0, 1));
  store.capture(2, stateOf(0, 2));
  // The third tensor cannot be copied: the spare buffer (step 1's) is partly
  // overwritten by the first two, then the capture throws.
  RankState bad = stateOf(0, 3);
  bad.tensors[2].second = at::empty({3, 5, 7}, at::device(at::kMeta).dtype(at::kDouble));
  EXPECT_THAT(errorOf([&] { store.capture(3, bad); }),
              HasSubstr("tensor 'adam.m' is on meta; snapshots take CPU tensors"));
  expectHolds(store.latest(), stateOf(0, 2), 2);

  RankState bad_rng = stateOf(0, 3);
  bad_rng.rng_state = at::zeros({4}, at::kFloat);
  EXPECT_THROW(store.capture(3, bad_rng), InputError);
  RankState duplicate = stateOf(0, 3);
  duplicate.tensors[1].first = "embed.weight";
  EXPECT_THAT(errorOf([&] { store.capture(3, duplicate); }), HasSubstr("two tensors are named 'embed.weight'"));
  expectHolds(store.latest(), stateOf(0, 2), 2);

  store.capture(3, stateOf(0, 3));
  expectHolds(store.latest(), stateOf(0, 3), 3);

  SnapshotStore fresh;
  EXPECT_THROW(fresh.capture(1, bad), InputError);
  EXPECT_FALSE(fresh.hasSnapshot());
}

// Recovery rolls back one step when a failure split a commit: both buffers
// must be findable by step, newest first (a rollback recaptures the same step).
TEST(SnapshotTest, TheTwoNewestStepsAreFoundByStep) {
  SnapshotStore store;
  EXPECT_EQ(store.steps(), (std::array<int64_t, 2>{-1, -1}));
  EXPECT_EQ(store.at(1), nullptr);
  store.capture(1, stateOf(0, 1));
  EXPECT_EQ(store.steps(), (std::array<int64_t, 2>{1, -1}));
  store.capture(2, stateOf(0, 2));
  store.capture(3, stateOf(0, 3));
  EXPECT_EQ(store.steps(), (std::array<int64_t, 2>{3, 2}));
  ASSERT_NE(store.at(2), nullptr);
  expectHolds(*store.at(2), stateOf(0, 2), 2);
  EXPECT_EQ(store.at(1), nullptr);  // overwritten by step 3
  // A rollback to step 2 recaptures step 2 (a new layout): at(2) is the new one.
  store.capture(2, stateOf(0, 7));
  EXPECT_EQ(store.steps(), (std::array<int64_t, 2>{2, 3}));
  expectHolds(*store.at(2), stateOf(0, 7), 2);
}

TEST(SnapshotTest, BuffersAreReusedForUnchangedShapes) {
  SnapshotStore store;
  std::vector<std::vector<const void*>> pointers;
  for (int64_t step = 1; step <= 6; ++step) {
    const Snapshot& snapshot = store.capture(step, stateOf(0, step));
    std::vector<const void*> ptrs;
    for (const auto& [name, tensor] : snapshot.tensors()) ptrs.push_back(tensor.data_ptr());
    ptrs.push_back(snapshot.rngState().data_ptr());
    pointers.push_back(ptrs);
    expectHolds(snapshot, stateOf(0, step), step);
  }
  for (size_t i = 2; i < pointers.size(); ++i) EXPECT_EQ(pointers[i], pointers[i - 2]) << "capture " << i;
  EXPECT_NE(pointers[0], pointers[1]);  // two buffers

  // A smaller state fits the existing buffer; a larger one grows it.
  const int64_t capacity = store.latest().capacityBytes();
  RankState small;
  small.tensors = {{"w", at::randn({4})}};
  store.capture(7, small);
  store.capture(8, small);
  EXPECT_EQ(store.latest().capacityBytes(), capacity);
  RankState large;
  large.tensors = {{"w", at::randn({1 << 12})}};
  store.capture(9, large);
  EXPECT_GT(store.latest().capacityBytes(), capacity);
  EXPECT_NO_THROW(store.latest().verify());
}

TEST(SnapshotTest, RestoreIntoCopiesBackAndChecksShapes) {
  SnapshotStore store;
  const RankState state = stateOf(2, 4);
  store.capture(4, state);
  RankState live = stateOf(2, 9);
  store.latest().restoreInto(live.tensors);
  for (size_t i = 0; i < live.tensors.size(); ++i) {
    EXPECT_TRUE(at::equal(live.tensors[i].second, state.tensors[i].second)) << live.tensors[i].first;
  }
  live.tensors[0].second = at::zeros({8, 16});
  EXPECT_THAT(errorOf([&] { store.latest().restoreInto(live.tensors); }),
              HasSubstr("tensor 0 is 'embed.weight' (Float [8, 16]) but the snapshot holds 'embed.weight' (Float "
                        "[16, 8])"));
}

TEST(SnapshotTest, SnapshotChecksumComparesStates) {
  SnapshotStore a;
  SnapshotStore b;
  a.capture(2, stateOf(1, 2));
  b.capture(2, stateOf(1, 2));
  EXPECT_EQ(a.latest().checksum(), b.latest().checksum());
  b.capture(3, stateOf(1, 2));
  EXPECT_NE(a.latest().checksum(), b.latest().checksum());
}

// --- buddy replication -------------------------------------------------------

TEST(SnapshotTest, BuddyRing) {
  EXPECT_EQ(buddyOf(0, 4), 1);
  EXPECT_EQ(buddyOf(3, 4), 0);
  EXPECT_EQ(buddySourceOf(0, 4), 3);
  EXPECT_EQ(buddySourceOf(2, 4), 1);
  for (int r = 0; r < 5; ++r) EXPECT_EQ(buddySourceOf(buddyOf(r, 5), 5), r);
  EXPECT_THROW(buddyOf(4, 4), InputError);
}

class SnapshotReplicationTest : public ::testing::TestWithParam<int> {};

TEST_P(SnapshotReplicationTest, EachRankHoldsItsLeftNeighboursSnapshot) {
  const int n = GetParam();
  test::runRanks(n, [n](int rank, dist::Communicator& comm) {
    SnapshotStore mine;
    SnapshotStore buddy;
    for (int64_t step = 1; step <= 3; ++step) {
      const Snapshot& captured = mine.capture(step, stateOf(rank, step));
      replicateToBuddy(comm, captured, buddy);
      const int left = buddySourceOf(rank, n);
      const Snapshot& held = restoreFromBuddy(buddy, left);
      expectHolds(held, stateOf(left, step), step);
      EXPECT_EQ(held.bytes(), mine.latest().bytes());
      EXPECT_THROW(restoreFromBuddy(buddy, rank), InputError);
    }
  });
}

TEST_P(SnapshotReplicationTest, CorruptionInTransitIsDetected) {
  const int n = GetParam();
  test::runRanks(n, [n](int rank, dist::Communicator& comm) {
    SnapshotStore mine;
    SnapshotStore buddy;
    replicateToBuddy(comm, mine.capture(1, stateOf(rank, 1)), buddy);

    // Rank 1 receives step 2 with one flipped bit in its left neighbour's layer.0.norm.
    ReplicationOptions opts;
    if (rank == 1) {
      opts.on_received = [](at::Tensor& bytes) {
        const int64_t offset = 16 * 8 * 4;  // embed.weight's 512 bytes come first (64-byte aligned)
        static_cast<unsigned char*>(bytes.data_ptr())[offset + 5] ^= 0x10;
      };
    }
    const Snapshot& step2 = mine.capture(2, stateOf(rank, 2));
    if (rank == 1) {
      EXPECT_THAT(errorOf([&] { replicateToBuddy(comm, step2, buddy, opts); }),
                  HasSubstr("snapshot of rank 0 at step 2: tensor 'layer.0.norm' (Float [8]) has checksum"));
    } else {
      replicateToBuddy(comm, step2, buddy, opts);
    }
    // The failed receive was not committed: rank 1 still holds step 1; the others hold step 2.
    const int left = buddySourceOf(rank, n);
    const int64_t held_step = rank == 1 ? 1 : 2;
    expectHolds(restoreFromBuddy(buddy, left), stateOf(left, held_step), held_step);
    // The communicator is still in step: a clean round succeeds everywhere.
    replicateToBuddy(comm, mine.capture(3, stateOf(rank, 3)), buddy);
    expectHolds(restoreFromBuddy(buddy, left), stateOf(left, 3), 3);
  });
}

INSTANTIATE_TEST_SUITE_P(Ranks, SnapshotReplicationTest, ::testing::Values(2, 3, 4));

TEST(SnapshotTest, ReplicationNeedsTwoRanks) {
  auto comm = dist::makeSelfCommunicator();
  SnapshotStore mine;
  SnapshotStore buddy;
  EXPECT_THAT(errorOf([&] { replicateToBuddy(*comm, mine.capture(1, stateOf(0, 1)), buddy); }),
              HasSubstr("has no buddy"));
  EXPECT_THROW(restoreFromBuddy(buddy, 0), InputError);
}

}  // namespace
}  // namespace loom::elastic
