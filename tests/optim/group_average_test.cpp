// averageInGroup (optim/outer/group_average.h) over 2..4 in-process Gloo ranks,
// for every codec: byte-identical results, the exact point-to-point traffic, and
// the distance to the exact mean against a bound derived per codec
// (../shared/reference/optimizers.md §7 test 15). Every rank can build every
// rank's input (a generator seeded by rank and salt), so references need no
// communication.
#include "optim/outer/group_average.h"

#include "optim/outer/codec.h"
#include "runtime/core/error.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace loom::optim::outer {
namespace {

using Codec = PseudoGradientCodec;
const std::vector<Codec> kCodecs = {Codec::kFp32, Codec::kFp16, Codec::kBf16, Codec::kUint8MinMax, Codec::kUint8Lut};
const std::vector<int64_t> kSizes = {0, 1, 7, 1000003};

// Rank r's buffer: normal values times (r + 1), so the members disagree in scale.
at::Tensor input(int rank, int64_t n, uint64_t salt = 0) {
  return at::randn({n}, at::make_generator<at::CPUGeneratorImpl>(1000 * salt + rank)) * (rank + 1);
}

std::vector<int> allRanks(int world) {
  std::vector<int> group(world);
  for (int r = 0; r < world; ++r) group[r] = r;
  return group;
}

std::string label(Codec codec, int64_t n, int g) {
  return std::string(codecName(codec)) + " n=" + std::to_string(n) + " g=" + std::to_string(g);
}

// What member `me` of g sends (and receives) in one call: its encoded share of every
// other member's chunk, then its averaged chunk to each of the g - 1 others.
int64_t expectedBytes(Codec codec, int64_t n, int g, int me) {
  int64_t bytes = (g - 1) * encodedBytes(codec, chunkRange(n, g, me).size());
  for (int j = 0; j < g; ++j) {
    if (j != me) bytes += encodedBytes(codec, chunkRange(n, g, j).size());
  }
  return bytes;
}

// Every member of `group` holds the same bytes as group[0] (buffers gathered over the world).
void expectByteIdentical(dist::Communicator& comm, const std::vector<int>& group, const at::Tensor& buffer,
                         const std::string& what) {
  const int64_t n = buffer.numel();
  at::Tensor all = at::empty({comm.size() * n}, at::kFloat);
  comm.allGather(buffer, all)->wait();
  const char* base = static_cast<const char*>(all.data_ptr());
  for (int member : group) {
    EXPECT_EQ(std::memcmp(base + member * n * 4, base + group[0] * n * 4, n * 4), 0)
        << what << ": rank " << member << " differs from rank " << group[0];
  }
}

// low <= mean - average <= high, per element of one chunk.
struct Bound {
  at::Tensor low;
  at::Tensor high;
};

// The bound on one owner's chunk, from the members' inputs `xs` (that chunk of each).
// With m the exact mean, A the mean of |x_j|, u32 = 2^-24:
//   stage 1 (each contribution encoded): error e1 per element;
//   fp32 sum in member order, / g: slop <= g u32 (A + e1) (we allow g + 2);
//   stage 2 (the average s encoded): error e2, from s's own statistics bounded via m.
//   fp32:   e1 = e2 = 0.
//   fp16:   e1 = 2^-11 A + 2^-25, e2 = 2^-11 (|m| + e1) + 2^-25.
//   bf16:   the same with 2^-8.
//   minmax: R_j = max - min of x_j; e1 = mean R_j / 255 + ulp, e2 <= range(s) / 255 + ulp with
//           range(s) <= mean range(x^_j) <= mean R_j; both truncate down, so m - s^ >= -slop.
//   lut:    per element (codec.h) scale inside bins 1..254, max(scale, max|x| - 126.5 scale) in
//           the end bins; e1 = the mean over j of x_j's bound; for s, its scale and max|s| are
//           bounded through m and |s - m| <= e1 + slop (see the code).
Bound meanErrorBound(Codec codec, const std::vector<at::Tensor>& xs) {
  const int g = static_cast<int>(xs.size());
  const at::Tensor stacked = at::stack(xs).to(at::kDouble);
  const at::Tensor a = stacked.abs().mean(0);
  const at::Tensor m = stacked.mean(0);
  const int64_t c = m.numel();
  const double u32 = std::ldexp(1.0, -24);
  at::Tensor e1 = at::zeros_like(m);
  at::Tensor e2 = at::zeros_like(m);
  switch (codec) {
    case Codec::kFp32:
      break;
    case Codec::kFp16:
    case Codec::kBf16: {
      const double u = std::ldexp(1.0, codec == Codec::kFp16 ? -11 : -8);
      const double tiny = codec == Codec::kFp16 ? std::ldexp(1.0, -25) : 1e-38;
      e1 = a * u + tiny;
      e2 = (m.abs() + e1) * u + tiny;
      break;
    }
    case Codec::kUint8MinMax: {
      const double mean_range = (std::get<0>(stacked.max(1)) - std::get<0>(stacked.min(1))).mean().item<double>();
      e1 = mean_range / 255 + (a + mean_range / 255) * 2 * u32;
      e2 = mean_range / 255 + (m.abs() + e1) * 2 * u32;
      break;
    }
    case Codec::kUint8Lut: {
      auto sigma = [c](const at::Tensor& x) {
        return c == 1 ? x.abs().item<double>() : std::sqrt(x.square().sum().item<double>() / (c - 1));
      };
      // Per element: `scale` when surely inside bins 1..254 (|x| < 126.5 scale), otherwise
      // the end-bin bound max(scale, max|x| - 126.5 scale).
      auto binBound = [](const at::Tensor& x_abs, double scale, double max_abs) {
        const double outer = std::max(scale, max_abs - 126.5 * scale);
        return at::where(x_abs < 126.5 * scale, at::full_like(x_abs, scale), at::full_like(x_abs, outer));
      };
      for (int j = 0; j < g; ++j) {
        const at::Tensor x_abs = stacked[j].abs();
        e1 += binBound(x_abs, 6 * sigma(stacked[j]) / 256, x_abs.max().item<double>()) / g;
      }
      // s = the fp32 average of the decoded contributions: |s - m| <= drift per element,
      // so |sigma_s - sigma_m| <= ||drift||_2 / sqrt(c - 1) and max|s| <= max|m| + max drift.
      const at::Tensor drift = e1 + (a + e1) * ((g + 2) * u32);
      const double dsigma = c == 1 ? drift.item<double>() : std::sqrt(drift.square().sum().item<double>() / (c - 1));
      const double scale_lo = std::max(6 * (sigma(m) - dsigma) / 256, 0.0);
      const double scale_hi = 6 * (sigma(m) + dsigma) / 256;
      const double outer =
          std::max(scale_hi, m.abs().max().item<double>() + drift.max().item<double>() - 126.5 * scale_lo);
      e2 = at::where(m.abs() + drift < 126.5 * scale_lo, at::full_like(m, scale_hi), at::full_like(m, outer));
      break;
    }
  }
  const at::Tensor slop = (a + e1) * ((g + 2) * u32);
  const at::Tensor high = (e1 + e2 + slop) * (1 + 1e-9);
  return {codec == Codec::kUint8MinMax ? slop : high, high};
}

// Checks member 0's view of the whole buffer against the bound, chunk by chunk.
void expectWithinBound(Codec codec, const at::Tensor& result, const std::vector<at::Tensor>& inputs,
                       const std::string& what) {
  const int g = static_cast<int>(inputs.size());
  const int64_t n = result.numel();
  for (int owner = 0; owner < g; ++owner) {
    const ChunkRange r = chunkRange(n, g, owner);
    if (r.size() == 0) continue;
    std::vector<at::Tensor> xs;
    for (const at::Tensor& x : inputs) xs.push_back(x.slice(0, r.begin, r.end));
    const Bound bound = meanErrorBound(codec, xs);
    const at::Tensor diff = at::stack(xs).to(at::kDouble).mean(0) - result.slice(0, r.begin, r.end).to(at::kDouble);
    const at::Tensor bad = (diff < -bound.low).logical_or(diff > bound.high);
    if (bad.any().item<bool>()) {
      const int64_t i = bad.nonzero()[0][0].item<int64_t>();
      ADD_FAILURE() << what << ": element " << r.begin + i << " mean - average = " << diff[i].item<double>()
                    << " outside [" << -bound.low[i].item<double>() << ", " << bound.high[i].item<double>() << "]";
    }
  }
}

class GroupAverageTest : public ::testing::TestWithParam<int> {};

// Every rank ends byte-identical, and each sends and receives exactly its chunks'
// encoded bytes: sum_{j != me} E(chunk j) + (g - 1) E(chunk me), i.e. 2 (g - 1) / g E(n).
TEST_P(GroupAverageTest, ByteIdenticalWithExactTraffic) {
  const int g = GetParam();
  test::runRanks(g, [g](int rank, dist::Communicator& comm) {
    for (Codec codec : kCodecs) {
      for (int64_t n : kSizes) {
        const std::string what = label(codec, n, g);
        at::Tensor buffer = input(rank, n);
        const int64_t sent = comm.bytesSent();
        const int64_t received = comm.bytesReceived();
        averageInGroup(comm, allRanks(g), buffer, codec, /*tag=*/3);
        EXPECT_EQ(comm.bytesSent() - sent, expectedBytes(codec, n, g, rank)) << what;
        EXPECT_EQ(comm.bytesReceived() - received, expectedBytes(codec, n, g, rank)) << what;
        expectByteIdentical(comm, allRanks(g), buffer, what);
      }
    }
  });
}

// Two quantizations away from the exact mean, within meanErrorBound.
TEST_P(GroupAverageTest, WithinTheCodecBoundOfTheMean) {
  const int g = GetParam();
  test::runRanks(g, [g](int rank, dist::Communicator& comm) {
    for (Codec codec : kCodecs) {
      for (int64_t n : kSizes) {
        at::Tensor buffer = input(rank, n);
        averageInGroup(comm, allRanks(g), buffer, codec, /*tag=*/0);
        if (rank != 0) continue;
        std::vector<at::Tensor> inputs;
        for (int r = 0; r < g; ++r) inputs.push_back(input(r, n));
        expectWithinBound(codec, buffer, inputs, label(codec, n, g));
      }
    }
  });
}

// Lossless transport: the result is bitwise the fp32 member-order sum divided by g,
// and within 1e-6 of the exact mean relative to the contributions' mean magnitude.
TEST_P(GroupAverageTest, Fp32GivesTheExactMean) {
  const int g = GetParam();
  test::runRanks(g, [g](int rank, dist::Communicator& comm) {
    const int64_t n = 100003;
    at::Tensor buffer = input(rank, n);
    averageInGroup(comm, allRanks(g), buffer, Codec::kFp32, /*tag=*/1);
    at::Tensor sum = input(0, n);
    at::Tensor exact = sum.to(at::kDouble);
    at::Tensor magnitude = sum.abs().to(at::kDouble);
    for (int r = 1; r < g; ++r) {
      const at::Tensor x = input(r, n);
      sum += x;  // elementwise fp32, member order
      exact += x.to(at::kDouble);
      magnitude += x.abs().to(at::kDouble);
    }
    EXPECT_TRUE(at::equal(buffer, sum / static_cast<float>(g)));
    const at::Tensor rel = (buffer.to(at::kDouble) - exact / g).abs() / (magnitude / g);
    EXPECT_LE(rel.max().item<double>(), 1e-6);
  });
}

INSTANTIATE_TEST_SUITE_P(GroupAverage, GroupAverageTest, ::testing::Values(2, 3, 4),
                         [](const ::testing::TestParamInfo<int>& info) { return std::to_string(info.param); });

// {0, 2} and {1, 3} of a world of 4 average different data at the same time with the
// same tag: each pair ends with its own mean, byte-identical within the pair.
TEST(GroupAverageSubgroupTest, DisjointPairsRunConcurrently) {
  test::runRanks(4, [](int rank, dist::Communicator& comm) {
    const std::vector<int> group = rank % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3};
    const uint64_t salt = 1 + rank % 2;
    for (Codec codec : {Codec::kFp32, Codec::kUint8Lut}) {
      const int64_t n = 10007;
      at::Tensor buffer = input(rank, n, salt);
      const int64_t sent = comm.bytesSent();
      averageInGroup(comm, group, buffer, codec, /*tag=*/5);
      const int me = rank == group[0] ? 0 : 1;
      EXPECT_EQ(comm.bytesSent() - sent, expectedBytes(codec, n, 2, me));
      const std::string what =
          label(codec, n, 2) + " group {" + std::to_string(group[0]) + "," + std::to_string(group[1]) + "}";
      expectByteIdentical(comm, group, buffer, what);
      const at::Tensor a = input(group[0], n, salt);
      const at::Tensor b = input(group[1], n, salt);
      if (codec == Codec::kFp32) {
        EXPECT_TRUE(at::equal(buffer, (a + b) / 2.0f)) << what;
      } else {
        expectWithinBound(codec, buffer, {a, b}, what);
      }
    }
  });
}

// A group of one sends nothing and leaves decode(encode(buffer)).
TEST(GroupAverageSingletonTest, GroupOfOneIsALocalRoundTrip) {
  test::runRanks(2, [](int rank, dist::Communicator& comm) {
    for (Codec codec : kCodecs) {
      const at::Tensor original = input(rank, 1001);
      at::Tensor buffer = original.clone();
      const int64_t sent = comm.bytesSent();
      const int64_t received = comm.bytesReceived();
      averageInGroup(comm, {rank}, buffer, codec, /*tag=*/0);
      EXPECT_EQ(comm.bytesSent(), sent);
      EXPECT_EQ(comm.bytesReceived(), received);
      at::Tensor bytes = at::empty({encodedBytes(codec, 1001)}, at::kByte);
      encode(codec, original, bytes);
      at::Tensor expected = at::empty({1001}, at::kFloat);
      decode(codec, bytes, expected);
      EXPECT_EQ(std::memcmp(buffer.data_ptr(), expected.data_ptr(), 1001 * 4), 0) << codecName(codec);
    }
  });
}

TEST(GroupAverageArgumentsTest, RejectsBadGroupsBuffersAndTags) {
  test::runRanks(2, [](int rank, dist::Communicator& comm) {
    at::Tensor buffer = input(rank, 8);
    EXPECT_THROW(averageInGroup(comm, {}, buffer, Codec::kFp32, 0), InputError);
    EXPECT_THROW(averageInGroup(comm, {1 - rank}, buffer, Codec::kFp32, 0), InputError);  // rank not in it
    EXPECT_THROW(averageInGroup(comm, {1, 0}, buffer, Codec::kFp32, 0), InputError);      // not ascending
    EXPECT_THROW(averageInGroup(comm, {0, 2}, buffer, Codec::kFp32, 0), InputError);      // 2 is outside the world
    EXPECT_THROW(averageInGroup(comm, {0, 1}, buffer, Codec::kFp32, -1), InputError);
    EXPECT_THROW(averageInGroup(comm, {0, 1}, buffer, Codec::kFp32, 1 << 30), InputError);
    at::Tensor doubles = buffer.to(at::kDouble);
    EXPECT_THROW(averageInGroup(comm, {0, 1}, doubles, Codec::kFp32, 0), InputError);
  });
}

// Both members hold a NaN at buffer element 60 (chunk 1 = [50, 100)): each throws before
// sending anything, naming the chunk and the element within it.
TEST(GroupAverageArgumentsTest, NonFiniteThrowsBeforeAnyMessage) {
  try {
    test::runRanks(2, [](int rank, dist::Communicator& comm) {
      at::Tensor buffer = input(rank, 100);
      buffer[60] = std::numeric_limits<float>::quiet_NaN();
      const int64_t sent = comm.bytesSent();
      try {
        averageInGroup(comm, {0, 1}, buffer, Codec::kUint8Lut, 0);
      } catch (...) {
        EXPECT_EQ(comm.bytesSent(), sent);
        throw;
      }
    });
    ADD_FAILURE() << "no throw";
  } catch (const c10::Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("chunk 1 of 2 (buffer elements [50, 100))"), std::string::npos) << message;
    EXPECT_NE(message.find("non-finite value at element 10"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace loom::optim::outer
