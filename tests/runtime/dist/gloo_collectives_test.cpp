// Every collective of the Gloo communicator for world sizes 1..4, six dtypes
// and sizes 0..100003, against a reference computed with plain libtorch from
// all ranks' inputs (every rank can build every rank's input: rank r holds
// r + 1 + i at element i).
#include "runtime/core/error.h"
#include "tests/support/multi_rank.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace loom::dist {
namespace {

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kDouble, at::kLong, at::kInt, at::kBFloat16, at::kHalf};
const std::vector<int64_t> kCounts = {0, 1, 7, 1023, 100003};
const std::vector<ReduceOp> kOps = {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin};

// Rank r's contribution: r + 1 + i, kept small for 16-bit floats so that their sums stay exact integers.
at::Tensor contribution(int rank, int64_t count, at::ScalarType dtype, int64_t offset = 0) {
  at::Tensor i = at::arange(offset, offset + count, at::kLong);
  if (dtype == at::kBFloat16 || dtype == at::kHalf) i = i.remainder(16);
  return (i + (rank + 1)).to(dtype);
}

// op over every rank's contribution, in float64; kAvg truncates for integer dtypes.
at::Tensor reference(int world_size, int64_t count, at::ScalarType dtype, ReduceOp op, int64_t offset = 0) {
  std::vector<at::Tensor> all;
  for (int r = 0; r < world_size; ++r) all.push_back(contribution(r, count, dtype, offset).to(at::kDouble));
  const at::Tensor stacked = at::stack(all);
  switch (op) {
    case ReduceOp::kSum:
      return stacked.sum(0).to(dtype);
    case ReduceOp::kMax:
      return std::get<0>(stacked.max(0)).to(dtype);
    case ReduceOp::kMin:
      return std::get<0>(stacked.min(0)).to(dtype);
    case ReduceOp::kAvg: {
      const at::Tensor sum = stacked.sum(0);
      return (at::isFloatingType(dtype) ? sum / world_size : at::div(sum, world_size, "trunc")).to(dtype);
    }
  }
  return {};
}

// Exact, except 16-bit float averages: rounded once from float32 here and from float64 in the reference
// (float16 has 3 more mantissa bits than bfloat16).
void expectMatches(const at::Tensor& actual, const at::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  if (actual.scalar_type() == at::kBFloat16 || actual.scalar_type() == at::kHalf) {
    const double rtol = actual.scalar_type() == at::kBFloat16 ? 1.0 / 128 : 1.0 / 1024;
    EXPECT_TRUE(at::allclose(actual.to(at::kDouble), expected.to(at::kDouble), rtol, /*atol=*/0)) << what;
  } else {
    EXPECT_TRUE(at::equal(actual, expected)) << what;
  }
}

std::string label(const char* op, at::ScalarType dtype, int64_t count, const std::string& extra = "") {
  return std::string(op) + " " + c10::toString(dtype) + " x " + std::to_string(count) + extra;
}

class GlooCollectivesTest : public ::testing::TestWithParam<int> {};

TEST_P(GlooCollectivesTest, AllReduceEveryOp) {
  const int n = GetParam();
  test::runRanks(n, [n](int rank, Communicator& comm) {
    for (at::ScalarType dtype : kDtypes) {
      for (int64_t count : kCounts) {
        for (ReduceOp op : kOps) {
          at::Tensor t = contribution(rank, count, dtype);
          comm.allReduce(t, op)->wait();
          expectMatches(t, reference(n, count, dtype, op), label("allReduce", dtype, count, reduceOpName(op)));
        }
      }
    }
  });
}

TEST_P(GlooCollectivesTest, BroadcastFromEveryRoot) {
  const int n = GetParam();
  test::runRanks(n, [n](int rank, Communicator& comm) {
    for (at::ScalarType dtype : kDtypes) {
      for (int64_t count : kCounts) {
        for (int root = 0; root < n; ++root) {
          at::Tensor t = contribution(rank, count, dtype);
          comm.broadcast(t, root)->wait();
          expectMatches(t, contribution(root, count, dtype),
                        label("broadcast", dtype, count, " root " + std::to_string(root)));
        }
      }
    }
  });
}

TEST_P(GlooCollectivesTest, AllGatherConcatenatesInRankOrder) {
  const int n = GetParam();
  test::runRanks(n, [n](int rank, Communicator& comm) {
    for (at::ScalarType dtype : kDtypes) {
      for (int64_t count : kCounts) {
        at::Tensor output = at::full({n * count}, -1, at::TensorOptions().dtype(dtype));
        comm.allGather(contribution(rank, count, dtype), output)->wait();
        std::vector<at::Tensor> parts;
        for (int r = 0; r < n; ++r) parts.push_back(contribution(r, count, dtype));
        expectMatches(output, at::cat(parts), label("allGather", dtype, count));
      }
    }
  });
}

TEST_P(GlooCollectivesTest, ReduceScatterEveryOp) {
  const int n = GetParam();
  test::runRanks(n, [n](int rank, Communicator& comm) {
    for (at::ScalarType dtype : kDtypes) {
      for (int64_t count : kCounts) {
        for (ReduceOp op : kOps) {
          const at::Tensor input = contribution(rank, n * count, dtype);
          at::Tensor output = at::full({count}, -1, at::TensorOptions().dtype(dtype));
          comm.reduceScatter(input, output, op)->wait();
          // This rank's chunk of the reduced input: elements [rank * count, (rank + 1) * count).
          expectMatches(output, reference(n, count, dtype, op, rank * count),
                        label("reduceScatter", dtype, count, reduceOpName(op)));
        }
      }
    }
  });
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, GlooCollectivesTest, ::testing::Values(1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "ranks" + std::to_string(info.param);
                         });

TEST(GlooCollectivesTest, NonContiguousTensorsAreStaged) {
  test::runRanks(3, [](int rank, Communicator& comm) {
    at::Tensor base = (at::arange(12, at::kFloat) + rank).view({3, 4});
    at::Tensor columns = base.t();  // a non-contiguous view of `base`
    comm.allReduce(columns, ReduceOp::kSum)->wait();
    EXPECT_TRUE(at::equal(base, (at::arange(12, at::kFloat) * 3 + 3).view({3, 4})));
    at::Tensor b = (at::arange(12, at::kDouble) + rank).view({3, 4});
    at::Tensor view = b.t();
    comm.broadcast(view, 2)->wait();
    EXPECT_TRUE(at::equal(b, (at::arange(12, at::kDouble) + 2).view({3, 4})));
  });
}

TEST(GlooCollectivesTest, MovesDtypesItCannotReduce) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    auto flags_of = [](std::vector<int64_t> bits) { return at::tensor(bits).to(at::kBool); };
    at::Tensor flags = flags_of({rank == 0, 1, 0});
    comm.broadcast(flags, 0)->wait();
    EXPECT_TRUE(at::equal(flags, flags_of({1, 1, 0})));
    at::Tensor gathered = at::empty({4}, at::kBool);
    comm.allGather(flags_of({rank == 1, 1}), gathered)->wait();
    EXPECT_TRUE(at::equal(gathered, flags_of({0, 1, 1, 1})));
    // A 2-byte pattern that is a NaN as float16 arrives unchanged.
    at::Tensor nan_bits = at::full({3}, rank == 0 ? 0x7e01 : 0, at::kShort);
    comm.broadcast(nan_bits, 0)->wait();
    EXPECT_TRUE(at::equal(nan_bits, at::full({3}, 0x7e01, at::kShort)));
    EXPECT_THROW(comm.allReduce(flags, ReduceOp::kMax), InputError);
  });
}

// Backends hold their own TensorImpl over the caller's memory, never the caller's:
// their threads may drop it last, and releasing a tensor Python owns there needs
// the GIL (a deadlock at communicator destruction from Python, libtorch 2.x).
TEST(GlooCollectivesTest, InFlightOperationsDoNotHoldTheCallersTensor) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    at::Tensor t = at::full({64}, static_cast<float>(rank + 1));
    const at::Tensor piece = at::full({64}, static_cast<float>(rank));
    at::Tensor gathered = at::empty({128});
    if (rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));  // rank 0's ops stay in flight
    auto reduce = comm.allReduce(t, ReduceOp::kSum);
    auto gather = comm.allGather(piece, gathered);
    if (rank == 0) {
      EXPECT_EQ(t.use_count(), 1);
      EXPECT_EQ(piece.use_count(), 1);
      EXPECT_EQ(gathered.use_count(), 1);
    }
    reduce->wait();
    gather->wait();
    EXPECT_TRUE(at::equal(t, at::full({64}, 3.0f)));
    EXPECT_TRUE(at::equal(gathered, at::cat({at::zeros({64}), at::ones({64})})));
  });
}

TEST(GlooCollectivesTest, SendRecvRingWithTags) {
  for (int n : {2, 3, 4}) {
    test::runRanks(n, [n](int rank, Communicator& comm) {
      const int right = (rank + 1) % n;
      const int left = (rank + n - 1) % n;
      // Tags tell apart three messages on the same pair, received in reverse order of sending.
      std::vector<at::Tensor> inbox;
      std::vector<std::unique_ptr<Work>> recvs;
      for (int tag = 2; tag >= 0; --tag) {
        inbox.push_back(at::empty({1000 + tag}, at::kDouble));
        recvs.push_back(comm.recv(inbox.back(), left, tag));
      }
      std::vector<std::unique_ptr<Work>> sends;
      for (int tag = 0; tag < 3; ++tag) {
        sends.push_back(comm.send(at::arange(1000 + tag, at::kDouble) + 100 * rank + tag, right, tag));
      }
      for (size_t k = 0; k < recvs.size(); ++k) {
        recvs[k]->wait();
        const int tag = 2 - static_cast<int>(k);
        EXPECT_TRUE(at::equal(inbox[k], at::arange(1000 + tag, at::kDouble) + 100 * left + tag))
            << "rank " << rank << " tag " << tag;
      }
      for (auto& s : sends) s->wait();
    });
  }
}

TEST(GlooCollectivesTest, RecvIntoANonContiguousTensor) {
  test::runRanks(2, [](int rank, Communicator& comm) {
    if (rank == 0) {
      comm.send(at::arange(6, at::kInt), 1, 7)->wait();
    } else {
      at::Tensor target = at::zeros({2, 3}, at::kInt);
      at::Tensor view = target.t();
      comm.recv(view, 0, 7)->wait();
      EXPECT_TRUE(at::equal(target.t().reshape({-1}), at::arange(6, at::kInt)));
    }
  });
}

TEST(GlooCollectivesTest, ByteCountersFollowTheDocumentedFormulas) {
  for (int n : {2, 3, 4}) {
    test::runRanks(n, [n](int rank, Communicator& comm) {
      const int64_t bytes = 1000 * 4;  // 1000 floats
      auto sent = [&] { return comm.bytesSent(); };
      auto received = [&] { return comm.bytesReceived(); };
      int64_t s0 = sent(), r0 = received();
      at::Tensor t = at::ones({1000});
      comm.allReduce(t, ReduceOp::kSum)->wait();
      EXPECT_EQ(sent() - s0, 2 * (n - 1) * bytes / n);
      EXPECT_EQ(received() - r0, 2 * (n - 1) * bytes / n);

      s0 = sent(), r0 = received();
      comm.broadcast(t, 1)->wait();
      EXPECT_EQ(sent() - s0, rank == 1 ? bytes : 0);
      EXPECT_EQ(received() - r0, rank == 1 ? 0 : bytes);

      s0 = sent(), r0 = received();
      at::Tensor gathered = at::empty({1000 * n});
      comm.allGather(t, gathered)->wait();
      EXPECT_EQ(sent() - s0, (n - 1) * bytes);
      EXPECT_EQ(received() - r0, (n - 1) * bytes);

      s0 = sent(), r0 = received();
      comm.reduceScatter(gathered, t, ReduceOp::kSum)->wait();
      EXPECT_EQ(sent() - s0, (n - 1) * bytes);
      EXPECT_EQ(received() - r0, (n - 1) * bytes);

      s0 = sent(), r0 = received();
      at::Tensor incoming = at::empty({1000});
      auto out = comm.send(t, (rank + 1) % n, 0);
      comm.recv(incoming, (rank + n - 1) % n, 0)->wait();
      out->wait();
      EXPECT_EQ(sent() - s0, bytes);
      EXPECT_EQ(received() - r0, bytes);
      comm.barrier();
    });
  }
}

}  // namespace
}  // namespace loom::dist
