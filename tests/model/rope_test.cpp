#include "model/rope.h"
#include "tests/model/reference_llama.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace loom::model {
namespace {

TEST(RopeTest, MatchesPerPairReferenceForEveryHead) {
  const RotaryEmbedding rope(8, 32, 10000.0);
  const at::Tensor x = at::randn({2, 11, 3, 8}, at::kFloat);  // [B, T, H, hd]
  const at::Tensor got = rope.apply(x);
  for (int64_t h = 0; h < 3; ++h) {
    const at::Tensor expected = test::referenceRope(x.select(2, h).to(at::kDouble), 10000.0);
    EXPECT_LT((got.select(2, h).to(at::kDouble) - expected).abs().max().item<double>(), 1e-5) << h;
  }
}

TEST(RopeTest, PositionZeroIsIdentityAndNormsArePreserved) {
  const RotaryEmbedding rope(4, 8, 500.0);
  const at::Tensor x = at::randn({1, 8, 2, 4});
  const at::Tensor y = rope.apply(x);
  EXPECT_TRUE(at::allclose(y.select(1, 0), x.select(1, 0)));
  EXPECT_TRUE(at::allclose(y.norm(2, {-1}), x.norm(2, {-1}), 1e-5, 1e-6));
}

TEST(RopeTest, StartPositionShiftsTheAngles) {
  const RotaryEmbedding rope(4, 16, 10000.0);
  const at::Tensor x = at::randn({1, 10, 1, 4});
  const at::Tensor whole = rope.apply(x);
  const at::Tensor tail = rope.apply(x.narrow(1, 6, 4), /*start_pos=*/6);
  EXPECT_TRUE(at::allclose(tail, whole.narrow(1, 6, 4), 1e-6, 1e-6));
  EXPECT_THROW(rope.apply(x, 10), c10::Error);
}

}  // namespace
}  // namespace loom::model
