// The CUDA fused all-reduce + add + RMSNorm paths over raw NCCL communicators
// (parallel/cuda/; parallel_elastic.md §6 tests 11, 12 and 15): all-reduce,
// reduce-scatter and symmetric memory against a float64 reference (float32 to
// 1e-5, bfloat16 to atol 1e-2 / rtol 1.6e-2) for hidden {64, 4096, 8192, 12288} and
// tokens {1, 7, 1024, 4099} on one rank (ncclCommInitRank with one rank); the
// symmetric kernel's launch uses at most max_ctas blocks and survives 10^4
// back-to-back launches at alternating staging offsets; with 2+ GPUs, every GPU
// as a rank: the same checks, and `out` byte-identical on every rank. Ranks are
// threads, one GPU each. Skips, with the reason, where no GPU is usable.
#include "parallel/cuda/fused_allreduce_norm_cuda.h"
#include "parallel/cuda/symmetric_norm.h"
#include "parallel/fused_allreduce_norm.h"
#include "runtime/core/error.h"

#include "tests/kernels/device_buffer.h"
#include "tests/kernels/tensor_close.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace loom::parallel::cuda {
namespace {

using test::DeviceBytes;

constexpr double kEps = 1e-5;
const std::vector<int64_t> kHidden = {64, 4096, 8192, 12288};
const std::vector<int64_t> kTokens = {1, 7, 1024, 4099};
const FusedNormCudaPath kPaths[] = {FusedNormCudaPath::kAllReduce, FusedNormCudaPath::kReduceScatter,
                                    FusedNormCudaPath::kSymmetricMemory};

at::ScalarType scalarType(NormDtype dtype) {
  return dtype == NormDtype::kFloat32 ? at::kFloat : at::kBFloat16;
}

const char* pathName(FusedNormCudaPath path) {
  return path == FusedNormCudaPath::kAllReduce       ? "all-reduce"
         : path == FusedNormCudaPath::kReduceScatter ? "reduce-scatter"
                                                     : "symmetric";
}

::testing::AssertionResult closeEnough(const at::Tensor& got, const at::Tensor& want, NormDtype dtype) {
  return dtype == NormDtype::kFloat32 ? test::allClose(got, want, 1e-5, 1e-5) : test::allClose(got, want, 1.6e-2, 1e-2);
}

/// One layer's data, the same on every rank: rank k's partials, the full residual, the gain.
struct Case {
  int64_t tokens, hidden;
  NormDtype dtype;
  at::Tensor partial(int k) const {
    return at::randn({tokens, hidden}, at::detail::createCPUGenerator(1000 * hidden + 10 * tokens + k))
        .to(scalarType(dtype));
  }
  at::Tensor residual() const {
    return at::randn({tokens, hidden}, at::detail::createCPUGenerator(hidden + tokens)).to(scalarType(dtype));
  }
  at::Tensor weight() const { return at::rand({hidden}, at::detail::createCPUGenerator(hidden)) + 0.5; }
  /// float64 (out, residual_out) over `ranks` partials.
  std::pair<at::Tensor, at::Tensor> reference(int ranks) const {
    at::Tensor v = residual().to(at::kDouble);
    for (int k = 0; k < ranks; ++k) v += partial(k).to(at::kDouble);
    return {v * at::rsqrt(v.pow(2).mean(-1, true) + kEps) * weight().to(at::kDouble), v};
  }
};

struct PathResult {
  at::Tensor out, residual_out;  // CPU, the case's dtype; residual_out full or this rank's shard
};

/// Runs `path` for rank `rank` of `ranks` on `comm` and reads the results back.
PathResult runPath(FusedNormCudaPath path, const Case& c, int rank, int ranks, ncclComm_t comm,
                   SymmetricNormWorkspace* ws, cudaStream_t stream) {
  const bool sharded = path != FusedNormCudaPath::kAllReduce;
  const at::Tensor residual = sharded ? tokenShard(c.residual(), ranks, rank) : c.residual();
  const DeviceBytes x(c.partial(rank)), res(residual), weight(c.weight());
  const DeviceBytes out(elementBytes(c.dtype) * c.tokens * c.hidden), res_out(residual.nbytes());
  FusedNormArgs args;
  args.x = x.get();
  args.residual = res.get();
  args.residual_out = res_out.get();
  args.weight = weight.as<float>();
  args.out = out.get();
  args.tokens = c.tokens;
  args.hidden = c.hidden;
  args.dtype = c.dtype;
  args.eps = kEps;
  if (path == FusedNormCudaPath::kAllReduce) {
    const DeviceBytes workspace(allReduceNormWorkspaceBytes(args));
    allReduceAddRmsNorm(args, workspace.get(), comm, stream);
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else if (path == FusedNormCudaPath::kReduceScatter) {
    const DeviceBytes workspace(reduceScatterNormWorkspaceBytes(args, ranks));
    reduceScatterAddRmsNorm(args, workspace.get(), comm, stream);
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else {
    symmetricAllReduceAddRmsNorm(*ws, args, /*row_offset=*/0, stream);
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  const at::ScalarType type = scalarType(c.dtype);
  return {out.toHost({c.tokens, c.hidden}, type), res_out.toHost(residual.sizes(), type)};
}

/// Runs fn(rank, comm, stream) on `ranks` threads, rank r on GPU r with a blocking
/// NCCL communicator; each rank's exception becomes a test failure naming it.
void forRanks(int ranks, const std::function<void(int, ncclComm_t, cudaStream_t)>& fn) {
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  std::vector<std::thread> threads;
  std::mutex mutex;
  for (int rank = 0; rank < ranks; ++rank) {
    threads.emplace_back([&, rank] {
      ncclComm_t comm = nullptr;
      cudaStream_t stream = nullptr;
      try {
        LOOM_CUDA_CHECK(cudaSetDevice(rank));
        LOOM_CUDA_CHECK(cudaStreamCreate(&stream));
        if (ncclCommInitRank(&comm, ranks, id, rank) != ncclSuccess)
          throw std::runtime_error("ncclCommInitRank failed");
        fn(rank, comm, stream);
      } catch (const std::exception& e) {
        const std::lock_guard<std::mutex> lock(mutex);
        ADD_FAILURE() << "rank " << rank << " of " << ranks << ": " << errorMessage(e);
      }
      if (comm != nullptr) ncclCommDestroy(comm);
      if (stream != nullptr) cudaStreamDestroy(stream);
    });
  }
  for (std::thread& t : threads) t.join();
}

class FusedNormCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string reason;
    if (!test::cudaUsable(&reason)) GTEST_SKIP() << reason;
    LOOM_CUDA_CHECK(cudaGetDeviceCount(&devices_));
  }
  int devices_ = 0;
};

/// Every path for every case on `ranks` GPUs; `out` of the sharded paths must be
/// the same bytes on every rank.
void checkAllPaths(int ranks, const std::vector<int64_t>& hiddens, const std::vector<int64_t>& token_counts) {
  for (const NormDtype dtype : {NormDtype::kFloat32, NormDtype::kBFloat16}) {
    for (const int64_t hidden : hiddens) {
      std::vector<std::vector<at::Tensor>> outs(ranks);  // [rank][case], sharded paths only
      forRanks(ranks, [&](int rank, ncclComm_t comm, cudaStream_t stream) {
        // A workspace that cannot be built fails the test but leaves the other paths running.
        std::optional<SymmetricNormWorkspace> ws;
        try {
          ws.emplace(comm, token_counts.back(), hidden, dtype);
        } catch (const std::exception& e) {
          ADD_FAILURE() << "rank " << rank << ": symmetric-memory workspace for hidden " << hidden << ": "
                        << errorMessage(e);
        }
        for (const int64_t tokens : token_counts) {
          const Case c{tokens, hidden, dtype};
          const auto [ref_out, ref_residual] = c.reference(ranks);
          for (const FusedNormCudaPath path : kPaths) {
            if (path == FusedNormCudaPath::kSymmetricMemory && !ws) continue;
            SCOPED_TRACE(std::string(pathName(path)) + (dtype == NormDtype::kFloat32 ? " fp32" : " bf16") + " [" +
                         std::to_string(tokens) + ", " + std::to_string(hidden) + "] rank " + std::to_string(rank) +
                         " of " + std::to_string(ranks) + (ws && ws->multicast() ? " multicast" : ""));
            const PathResult got = runPath(path, c, rank, ranks, comm, ws ? &*ws : nullptr, stream);
            const bool sharded = path != FusedNormCudaPath::kAllReduce;
            EXPECT_TRUE(closeEnough(got.out, ref_out, dtype));
            EXPECT_TRUE(
                closeEnough(got.residual_out, sharded ? tokenShard(ref_residual, ranks, rank) : ref_residual, dtype));
            if (sharded) outs[rank].push_back(got.out);
          }
        }
      });
      for (int rank = 1; rank < ranks; ++rank) {
        ASSERT_EQ(outs[rank].size(), outs[0].size());
        for (size_t i = 0; i < outs[0].size(); ++i) {
          EXPECT_TRUE(at::equal(outs[rank][i], outs[0][i])) << "rank " << rank << " result " << i << " differs";
        }
      }
    }
  }
}

TEST_F(FusedNormCudaTest, OneRankAllPathsMatchTheReference) {
  checkAllPaths(1, kHidden, kTokens);
}

TEST_F(FusedNormCudaTest, EveryGpuAsARankAllPathsMatchTheReferenceAndAgreeBytewise) {
  if (devices_ < 2) GTEST_SKIP() << "needs 2 CUDA devices, found " << devices_;
  checkAllPaths(std::min(devices_, 8), {4096, 8192}, kTokens);
}

TEST_F(FusedNormCudaTest, SymmetricKernelUsesAtMostMaxCtasAndSurvivesTenThousandLaunches) {
  forRanks(1, [&](int, ncclComm_t comm, cudaStream_t stream) {
    constexpr int64_t kRows = 64;
    constexpr int64_t kHiddenSize = 4096;
    SymmetricNormOptions opts;
    opts.max_ctas = 8;
    SymmetricNormWorkspace ws(comm, 2 * kRows, kHiddenSize, NormDtype::kBFloat16, opts);
    for (const int64_t tokens : kTokens) EXPECT_LE(ws.launchShape(tokens).blocks, 8u) << tokens << " tokens";
    EXPECT_EQ(ws.launchShape(kRows).blocks, 8u);

    // x is produced in place in the staging rows and normalised there (no copies);
    // the residual shard is updated in place: the TokenWeave calling pattern.
    const Case c{kRows, kHiddenSize, NormDtype::kBFloat16};
    const DeviceBytes residual(c.residual()), weight(c.weight());
    auto* staging = static_cast<char*>(ws.staging());
    const size_t block_bytes = 2 * kRows * kHiddenSize;
    const auto call = [&](int64_t offset) {
      FusedNormArgs args;
      args.x = args.out = staging + offset * 2 * kHiddenSize;
      args.residual = args.residual_out = residual.get();
      args.weight = weight.as<float>();
      args.tokens = kRows;
      args.hidden = kHiddenSize;
      args.eps = kEps;
      symmetricAllReduceAddRmsNorm(ws, args, offset, stream);
    };
    LOOM_CUDA_CHECK(cudaMemsetAsync(staging, 0, 2 * block_bytes, stream));
    for (int i = 0; i < 10000; ++i) call(i % 2 == 0 ? 0 : kRows);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    cudaError_t status = cudaErrorNotReady;
    while ((status = cudaStreamQuery(stream)) == cudaErrorNotReady && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(status, cudaSuccess) << "10^4 launches did not finish within 120 s: " << cudaGetErrorName(status);

    // After the stress, fresh inputs at both offsets still give the reference.
    const auto [ref_out, ref_residual] = c.reference(1);
    for (const int64_t offset : {int64_t{0}, kRows}) {
      const at::Tensor x = c.partial(0);
      LOOM_CUDA_CHECK(cudaMemcpy(staging + offset * 2 * kHiddenSize, x.data_ptr(), x.nbytes(), cudaMemcpyHostToDevice));
      const at::Tensor r = c.residual();
      LOOM_CUDA_CHECK(cudaMemcpy(residual.get(), r.data_ptr(), r.nbytes(), cudaMemcpyHostToDevice));
      call(offset);
      LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
      at::Tensor out = at::empty({kRows, kHiddenSize}, at::kBFloat16);
      LOOM_CUDA_CHECK(
          cudaMemcpy(out.data_ptr(), staging + offset * 2 * kHiddenSize, out.nbytes(), cudaMemcpyDeviceToHost));
      EXPECT_TRUE(closeEnough(out, ref_out, NormDtype::kBFloat16)) << "offset " << offset;
      EXPECT_TRUE(
          closeEnough(residual.toHost({kRows, kHiddenSize}, at::kBFloat16), ref_residual, NormDtype::kBFloat16));
    }
  });
}

TEST_F(FusedNormCudaTest, SymmetricPathRefusesRowsBeyondItsCapacityAndOneRankIsNotAutoChosen) {
  forRanks(1, [&](int, ncclComm_t comm, cudaStream_t stream) {
    SymmetricNormWorkspace ws(comm, 16, 64, NormDtype::kFloat32);
    FusedNormArgs args;
    args.tokens = 9;
    args.hidden = 64;
    args.dtype = NormDtype::kFloat32;
    EXPECT_THROW(symmetricAllReduceAddRmsNorm(ws, args, /*row_offset=*/8, stream), InputError);
    // One rank has no multicast: the automatic choice stays on reduce-scatter.
    EXPECT_FALSE(ws.multicast());
    EXPECT_EQ(chooseFusedNormPath(&ws, args), FusedNormCudaPath::kReduceScatter);
  });
}

// Host logic only: runs everywhere.
TEST(FusedNormCudaChoiceTest, WithoutAWorkspaceTheReduceScatterPathIsChosen) {
  FusedNormArgs args;
  args.tokens = 7;
  args.hidden = 4096;
  EXPECT_EQ(chooseFusedNormPath(nullptr, args), FusedNormCudaPath::kReduceScatter);
  EXPECT_EQ(shardRows(4099, 8), 513);
  EXPECT_EQ(shardRows(1, 8), 1);
}

}  // namespace
}  // namespace loom::parallel::cuda
