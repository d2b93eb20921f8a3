// DataLoader against direct slicing of the token array, the shuffle's
// permutation and determinism properties, an independent Python reference of
// the documented order, rank sharding and resume.
#include "train/data/data_loader.h"

#include "tests/support/test_util.h"
#include "tests/train/data/data_test_util.h"
#include "train/data/sample_order.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <sstream>

namespace loom::data {
namespace {

using loom::test::TempDir;
using test::inputErrorOf;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Rows = std::vector<std::vector<int64_t>>;

// Token i = i: every window starts with a distinct token, so a row names its window.
std::vector<uint16_t> iotaTokens(int64_t count) {
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  std::iota(tokens.begin(), tokens.end(), uint16_t{0});
  return tokens;
}

class DataLoaderTest : public ::testing::Test {
 protected:
  std::shared_ptr<const TokenShard> shardOf(const std::vector<uint16_t>& tokens) {
    const std::string path = dir_.file("shard" + std::to_string(next_++) + ".bin");
    loom::test::writeTextFile(path, test::shardBytes(tokens));
    return TokenShard::open(path, 65536);
  }

  static LoaderOptions options(int64_t seq_len, SampleOrder order, uint64_t seed = 7) {
    LoaderOptions opts;
    opts.seq_len = seq_len;
    opts.order = order;
    opts.seed = seed;
    return opts;
  }

  TempDir dir_;
  int next_ = 0;
};

Rows rowsOf(const at::Tensor& t) {
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_EQ(t.dim(), 2);
  EXPECT_TRUE(t.is_contiguous());
  Rows rows(static_cast<size_t>(t.size(0)));
  const int64_t* p = t.data_ptr<int64_t>();
  for (auto& row : rows) {
    row.assign(p, p + t.size(1));
    p += t.size(1);
  }
  return rows;
}

Rows rowsOf(const std::vector<at::Tensor>& micro_batches) {
  Rows rows;
  for (const auto& mb : micro_batches) {
    const Rows part = rowsOf(mb);
    rows.insert(rows.end(), part.begin(), part.end());
  }
  return rows;
}

std::vector<int64_t> slice(const std::vector<uint16_t>& tokens, int64_t begin, int64_t length) {
  return std::vector<int64_t>(tokens.begin() + begin, tokens.begin() + begin + length);
}

TEST_F(DataLoaderTest, SequentialWindowsEqualDirectSlicing) {
  const std::vector<uint16_t> tokens = test::syntheticTokens(1000, 37);
  const int64_t seq_len = 16;
  DataLoader loader(shardOf(tokens), options(seq_len, SampleOrder::kSequential));
  const int64_t n = (1000 - 1) / seq_len;
  ASSERT_EQ(loader.windowsPerEpoch(), n);
  const Rows rows = rowsOf(loader.samples(0, 3 * n + 5));
  ASSERT_EQ(rows.size(), static_cast<size_t>(3 * n + 5));
  for (int64_t g = 0; g < 3 * n + 5; ++g) {
    EXPECT_EQ(rows[g], slice(tokens, (g % n) * seq_len, seq_len + 1)) << "global sample " << g;
  }
  // The last window ends exactly at or before the last token.
  EXPECT_LE((n - 1) * seq_len + seq_len + 1, 1000);
  EXPECT_EQ(rowsOf(loader.samples(n - 1, 2)), (Rows{slice(tokens, (n - 1) * seq_len, 17), slice(tokens, 0, 17)}));
}

TEST_F(DataLoaderTest, ShuffledSamplesReadTheirWindows) {
  const std::vector<uint16_t> tokens = test::syntheticTokens(500, 11);
  DataLoader loader(shardOf(tokens), options(8, SampleOrder::kShuffled));
  const int64_t n = loader.windowsPerEpoch();
  const Rows rows = rowsOf(loader.samples(n - 10, 20));  // across the epoch boundary
  for (int64_t i = 0; i < 20; ++i) {
    EXPECT_EQ(rows[i], slice(tokens, loader.windowOf(n - 10 + i) * 8, 9)) << "row " << i;
  }
}

TEST_F(DataLoaderTest, ShuffleIsDeterministicPerSeed) {
  const auto shard = shardOf(iotaTokens(3000));
  DataLoader a(shard, options(10, SampleOrder::kShuffled, 42));
  DataLoader b(shard, options(10, SampleOrder::kShuffled, 42));
  DataLoader c(shard, options(10, SampleOrder::kShuffled, 43));
  const int64_t n = a.windowsPerEpoch();
  int64_t differ = 0;
  for (int64_t g = 0; g < 3 * n; ++g) {
    EXPECT_EQ(a.windowOf(g), b.windowOf(g)) << "global sample " << g;
    differ += a.windowOf(g) != c.windowOf(g);
  }
  EXPECT_GT(differ, 2 * n) << "seeds 42 and 43 should give unrelated orders";
  EXPECT_EQ(rowsOf(a.samples(5, 30)), rowsOf(b.samples(5, 30)));
}

TEST_F(DataLoaderTest, EachEpochIsAFreshPermutation) {
  const auto shard = shardOf(iotaTokens(2000));
  DataLoader loader(shard, options(10, SampleOrder::kShuffled));
  const int64_t n = loader.windowsPerEpoch();
  std::vector<int64_t> identity(static_cast<size_t>(n));
  std::iota(identity.begin(), identity.end(), int64_t{0});
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 4; ++e) {
    std::vector<int64_t> order;
    for (int64_t g = e * n; g < (e + 1) * n; ++g) order.push_back(loader.windowOf(g));
    EXPECT_NE(order, identity) << "epoch " << e << " is not shuffled";
    epochs.push_back(order);
    std::sort(order.begin(), order.end());
    EXPECT_EQ(order, identity) << "epoch " << e << " must read every window exactly once";
  }
  for (size_t e = 1; e < epochs.size(); ++e) EXPECT_NE(epochs[e], epochs[0]) << "epoch " << e;
}

TEST_F(DataLoaderTest, ShuffleMatchesTheDocumentedAlgorithmInPython) {
  // tests/train/data/reference_order.py implements docs/data.md's order independently.
  for (const auto& [n, seed] :
       std::vector<std::pair<int64_t, uint64_t>>{{1, 0}, {2, 1}, {97, 1234}, {1000, 18446744073709551615ULL}}) {
    const std::string command = "/usr/bin/python3 " + loom::test::sourcePath("tests/train/data/reference_order.py") +
                                " " + std::to_string(n) + " " + std::to_string(seed) + " 3";
    const auto result = loom::test::runCommand(command);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    std::istringstream in(result.output);
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      std::vector<int64_t> expected(static_cast<size_t>(n));
      for (auto& v : expected) in >> v;
      ASSERT_TRUE(in) << "short reference output: " << result.output;
      EXPECT_EQ(epochPermutation(n, seed, epoch), expected) << "n=" << n << " seed=" << seed << " epoch=" << epoch;
    }
  }
}

TEST_F(DataLoaderTest, RanksSharesConcatenateToTheSingleRankBatch) {
  const auto shard = shardOf(iotaTokens(250));
  const int64_t global_batch = 12;
  for (SampleOrder order : {SampleOrder::kSequential, SampleOrder::kShuffled}) {
    LoaderOptions opts = options(8, order);
    opts.global_batch = opts.micro_batch = global_batch;
    DataLoader single(shard, opts);
    std::vector<Rows> expected;  // 6 steps = 72 samples: nearly 3 epochs of 31 windows
    for (int step = 0; step < 6; ++step) expected.push_back(rowsOf(single.nextStep()));
    for (int world = 1; world <= 4; ++world) {
      for (int64_t micro : {int64_t{1}, global_batch / world}) {
        std::vector<DataLoader> ranks;
        for (int r = 0; r < world; ++r) {
          LoaderOptions rank_opts = opts;
          rank_opts.world_size = world;
          rank_opts.rank = r;
          rank_opts.micro_batch = micro;
          ranks.emplace_back(shard, rank_opts);
        }
        for (int step = 0; step < 6; ++step) {
          Rows joined;
          for (auto& loader : ranks) {
            const auto micro_batches = loader.nextStep();
            EXPECT_EQ(static_cast<int64_t>(micro_batches.size()), global_batch / world / micro);
            for (const auto& mb : micro_batches) EXPECT_EQ(mb.size(0), micro);
            const Rows part = rowsOf(micro_batches);
            joined.insert(joined.end(), part.begin(), part.end());
          }
          EXPECT_EQ(joined, expected[step]) << "world " << world << " micro " << micro << " step " << step;
        }
        EXPECT_EQ(ranks[0].cursor(), 6 * global_batch);
      }
    }
  }
}

TEST_F(DataLoaderTest, ResumeContinuesWithoutRepeatOrSkip) {
  const int64_t seq_len = 10;
  const auto shard = shardOf(iotaTokens(1000));  // N = 99 windows; 99 is not a multiple of 12
  LoaderOptions opts = options(seq_len, SampleOrder::kShuffled);
  opts.global_batch = 12;
  opts.micro_batch = 4;
  DataLoader first(shard, opts);
  Rows seen;
  for (int step = 0; step < 7; ++step) {
    const Rows part = rowsOf(first.nextStep());
    seen.insert(seen.end(), part.begin(), part.end());
  }
  ASSERT_EQ(first.cursor(), 84);

  DataLoader resumed(shard, opts);
  resumed.seek(first.cursor());
  DataLoader reference(shard, opts);
  reference.seek(first.cursor());
  for (int step = 0; step < 12; ++step) {  // through the boundaries at samples 99 and 198
    const Rows a = rowsOf(first.nextStep());
    EXPECT_EQ(a, rowsOf(resumed.nextStep())) << "step " << 7 + step;
    EXPECT_EQ(a, rowsOf(reference.nextStep())) << "step " << 7 + step;
    seen.insert(seen.end(), a.begin(), a.end());
  }
  ASSERT_EQ(seen.size(), 228u);
  const int64_t n = first.windowsPerEpoch();
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> windows;
    for (int64_t g = epoch * n; g < (epoch + 1) * n; ++g) {
      const auto& row = seen[static_cast<size_t>(g)];
      ASSERT_EQ(row[0] % seq_len, 0);
      windows.push_back(row[0] / seq_len);  // token i = i names the window
    }
    std::sort(windows.begin(), windows.end());
    std::vector<int64_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), int64_t{0});
    EXPECT_EQ(windows, all) << "epoch " << epoch << " repeated or skipped a window";
  }
}

// An elastic job that lost ranks splits the same global batch unevenly: the
// ranks' shares still tile the step's samples exactly once, in order, and a
// share longer than micro_batch ends with a smaller micro-batch.
TEST_F(DataLoaderTest, UnevenSplitsTileTheGlobalBatch) {
  const auto shard = shardOf(iotaTokens(1000));
  for (const int world : {3, 5, 7}) {
    std::vector<int64_t> firsts;
    for (int rank = 0; rank < world; ++rank) {
      LoaderOptions opts = options(4, SampleOrder::kSequential);
      opts.global_batch = 16;
      opts.micro_batch = 2;
      opts.rank = rank;
      opts.world_size = world;
      DataLoader loader(shard, opts);
      loader.seek(16);
      int64_t rows = 0;
      for (const at::Tensor& micro : loader.nextStep()) {
        EXPECT_LE(micro.size(0), 2);
        for (int64_t i = 0; i < micro.size(0); ++i) firsts.push_back(micro[i][0].item<int64_t>());
        rows += micro.size(0);
      }
      EXPECT_EQ(rows, loader.rankCount());
      EXPECT_EQ(loader.rankOffset(), rank * 16 / world);
    }
    ASSERT_EQ(firsts.size(), 16u) << world << " ranks";
    // Sequential order: global sample 16 + i starts at token (16 + i) * seq_len.
    for (size_t i = 0; i < firsts.size(); ++i) EXPECT_EQ(firsts[i], static_cast<int64_t>(16 + i) * 4) << i;
  }
}

TEST_F(DataLoaderTest, RejectsBadOptions) {
  const auto shard = shardOf(iotaTokens(100));
  LoaderOptions opts = options(200, SampleOrder::kSequential);
  EXPECT_THAT(inputErrorOf([&] { DataLoader loader(shard, opts); }),
              AllOf(HasSubstr(shard->path()), HasSubstr("100 tokens"), HasSubstr("data.seq_len + 1 = 201")));
  opts.seq_len = 99;  // exactly one window of 100 tokens
  EXPECT_EQ(DataLoader(shard, opts).windowsPerEpoch(), 1);

  opts.seq_len = 8;
  opts.world_size = 4;
  opts.global_batch = 12;
  opts.micro_batch = 3;
  opts.rank = 4;
  EXPECT_THAT(inputErrorOf([&] { DataLoader loader(shard, opts); }), HasSubstr("rank 4"));
  opts.rank = 0;
  opts.seq_len = 0;
  EXPECT_THAT(inputErrorOf([&] { DataLoader loader(shard, opts); }), HasSubstr("data.seq_len"));
  opts.seq_len = 8;
  DataLoader loader(shard, opts);
  EXPECT_THAT(inputErrorOf([&] { loader.seek(18); }), AllOf(HasSubstr("18"), HasSubstr("train.global_batch (12)")));
  EXPECT_THAT(inputErrorOf([&] { loader.seek(-12); }), HasSubstr("-12"));
  loader.seek(24);
  EXPECT_EQ(loader.cursor(), 24);
}


// Replicas of an outer optimizer are groups: each group reads its contiguous
// part of the global batch, split over its ranks. Uneven groups (an elastic
// job that lost ranks of one replica) still tile the batch exactly once, in
// order; and with G * W dividing B the shares equal the flat split over G * W ranks.
TEST_F(DataLoaderTest, GroupsTileTheGlobalBatchAndMatchTheFlatSplit) {
  const auto shard = shardOf(iotaTokens(1000));
  const auto loaderFor = [&](int group, int groups, int rank, int world) {
    LoaderOptions opts = options(4, SampleOrder::kSequential);
    opts.global_batch = 12;
    opts.micro_batch = 12;
    opts.group = group;
    opts.groups = groups;
    opts.rank = rank;
    opts.world_size = world;
    return DataLoader(shard, opts);
  };
  // Group sizes {2, 1, 3}: 3 groups of 4 samples each.
  const std::vector<int> sizes = {2, 1, 3};
  int64_t expected_offset = 0;
  for (int g = 0; g < 3; ++g) {
    int64_t group_total = 0;
    for (int r = 0; r < sizes[g]; ++r) {
      const DataLoader loader = loaderFor(g, 3, r, sizes[g]);
      EXPECT_EQ(loader.groupCount(), 4) << "group " << g;
      EXPECT_EQ(loader.rankOffset(), expected_offset) << "group " << g << " rank " << r;
      expected_offset += loader.rankCount();
      group_total += loader.rankCount();
    }
    EXPECT_EQ(group_total, 4) << "group " << g;
  }
  EXPECT_EQ(expected_offset, 12);
  // 2 groups of 3 ranks = the flat split over 6 ranks (6 divides 12).
  for (int g = 0; g < 2; ++g) {
    for (int r = 0; r < 3; ++r) {
      const DataLoader grouped = loaderFor(g, 2, r, 3);
      const DataLoader flat = loaderFor(0, 1, g * 3 + r, 6);
      EXPECT_EQ(grouped.rankOffset(), flat.rankOffset());
      EXPECT_EQ(grouped.rankCount(), flat.rankCount());
    }
  }
  EXPECT_THROW(loaderFor(2, 2, 0, 1), InputError);
}

}  // namespace
}  // namespace loom::data
