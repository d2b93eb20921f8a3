// fusedAllReduceAddRmsNorm (parallel/fused_allreduce_norm.h) on CUDA tensors over
// loom's NcclCommunicator, one rank per GPU (at most 4): both paths against a
// float64 reference (float32 to 1e-5, bfloat16 to atol 1e-2 / rtol 1.6e-2), and
// the reduce-scatter `out` byte-identical on every rank. Built only with a CUDA
// libtorch (LOOM_KERNELS_TORCH_CUDA); skips where no GPU is usable.
#include "parallel/fused_allreduce_norm.h"
#include "runtime/dist/nccl_communicator.h"

#include "tests/kernels/tensor_close.h"
#include "tests/runtime/dist/nccl_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

namespace loom::parallel {
namespace {

constexpr double kEps = 1e-5;

at::Tensor partial(int k, int64_t tokens, int64_t hidden, at::ScalarType dtype) {
  return at::randn({tokens, hidden}, at::detail::createCPUGenerator(100 * tokens + k)).to(dtype);
}

TEST(FusedNormTorchCudaTest, BothPathsOnCudaTensorsMatchTheReference) {
  LOOM_REQUIRE_CUDA_DEVICES(1);
  const int ranks = std::min(dist::test::cudaDevices().count, 4);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t tokens : {1, 7, 1024}) {
      const int64_t hidden = 4096;
      const at::Tensor residual = at::randn({tokens, hidden}).to(dtype);
      const at::Tensor weight = at::rand({hidden}) + 0.5;
      at::Tensor want = residual.to(at::kDouble);
      for (int k = 0; k < ranks; ++k) want += partial(k, tokens, hidden, dtype).to(at::kDouble);
      const at::Tensor want_out = want * at::rsqrt(want.pow(2).mean(-1, true) + kEps) * weight.to(at::kDouble);
      const double rtol = dtype == at::kFloat ? 1e-5 : 1.6e-2;
      const double atol = dtype == at::kFloat ? 1e-5 : 1e-2;
      std::vector<at::Tensor> scattered_outs(ranks);
      std::mutex mutex;
      dist::test::runRanks(ranks, [&](int rank, c10::intrusive_ptr<c10d::Store> store) {
        auto comm = dist::makeNcclCommunicator(store, rank, ranks, rank);
        const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(rank));
        const at::Tensor x = partial(rank, tokens, hidden, dtype).to(device);
        const at::Tensor w = weight.to(device);
        const FusedNormOutput full =
            fusedAllReduceAddRmsNorm(x, residual.to(device), w, kEps, *comm, FusedNormPath::kAllReduce);
        const FusedNormOutput sharded = fusedAllReduceAddRmsNorm(x, tokenShard(residual, ranks, rank).to(device), w,
                                                                 kEps, *comm, FusedNormPath::kReduceScatter);
        const std::string label = std::string(c10::toString(dtype)) + " tokens " + std::to_string(tokens) + " rank " +
                                  std::to_string(rank) + " of " + std::to_string(ranks);
        EXPECT_TRUE(full.out.is_cuda() && full.out.scalar_type() == dtype) << label;
        EXPECT_TRUE(test::allClose(full.out.cpu(), want_out, rtol, atol)) << label;
        EXPECT_TRUE(test::allClose(full.residual.cpu(), want, rtol, atol)) << label;
        EXPECT_TRUE(test::allClose(sharded.out.cpu(), want_out, rtol, atol)) << label;
        EXPECT_TRUE(test::allClose(sharded.residual.cpu(), tokenShard(want, ranks, rank), rtol, atol)) << label;
        const std::lock_guard<std::mutex> lock(mutex);
        scattered_outs[rank] = sharded.out.cpu();
      });
      for (int rank = 1; rank < ranks; ++rank) {
        EXPECT_TRUE(at::equal(scattered_outs[rank], scattered_outs[0])) << "rank " << rank << " differs";
      }
    }
  }
}

}  // namespace
}  // namespace loom::parallel
