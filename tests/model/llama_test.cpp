#include "model/llama.h"
#include "model/init.h"
#include "tests/model/reference_llama.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

namespace loom::model {
namespace {

ModelOptions smallOptions() {
  ModelOptions o;
  o.vocab_size = 300;
  o.dim = 32;
  o.layers = 2;
  o.heads = 4;
  o.kv_heads = 2;  // grouped-query: two query heads per KV head
  o.ffn_dim = 48;
  o.max_seq_len = 64;
  return o;
}

Llama makeModel(const ModelOptions& o, uint64_t seed) {
  Llama model(o);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  initializeParameters(*model, gen);
  return model;
}

test::Weights weightsOf(const LlamaImpl& model, at::ScalarType dtype, bool requires_grad) {
  test::Weights w;
  for (const auto& [name, p] : model.namedParameters()) {
    w[name] = p.detach().to(dtype).clone().requires_grad_(requires_grad);
  }
  return w;
}

TEST(LlamaTest, ParameterNamesAndShapesAreTheSafetensorsKeys) {
  const ModelOptions o = smallOptions();
  Llama model(o);
  const int64_t d = o.dim, f = o.ffn_dim, v = o.vocab_size, kv = o.kvHeads() * o.headDim();
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected = {{"tok_emb.weight", {v, d}}};
  for (int64_t i = 0; i < o.layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    expected.push_back({p + "attn_norm.weight", {d}});
    expected.push_back({p + "attn.wq.weight", {d, d}});
    expected.push_back({p + "attn.wk.weight", {kv, d}});
    expected.push_back({p + "attn.wv.weight", {kv, d}});
    expected.push_back({p + "attn.wo.weight", {d, d}});
    expected.push_back({p + "mlp_norm.weight", {d}});
    expected.push_back({p + "mlp.w1.weight", {f, d}});
    expected.push_back({p + "mlp.w2.weight", {d, f}});
    expected.push_back({p + "mlp.w3.weight", {f, d}});
  }
  expected.push_back({"norm.weight", {d}});
  expected.push_back({"head.weight", {v, d}});
  const auto params = model->namedParameters();
  ASSERT_EQ(params.size(), expected.size());
  std::map<std::string, std::vector<int64_t>> got;
  int64_t total = 0;
  for (const auto& [name, t] : params) {
    got[name] = t.sizes().vec();
    total += t.numel();
  }
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_EQ(got[name], shape) << name;
  }
  EXPECT_EQ(parameterCount(o), total);
}

TEST(LlamaTest, InitialisationIsDeterministicAndFollowsTheDocumentedScales) {
  ModelOptions o = smallOptions();
  o.dim = 128;
  o.ffn_dim = 256;
  o.layers = 4;
  const Llama a = makeModel(o, 11);
  const Llama b = makeModel(o, 11);
  const Llama c = makeModel(o, 12);
  const auto pa = a->namedParameters(), pb = b->namedParameters(), pc = c->namedParameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(at::equal(pa[i].second, pb[i].second)) << pa[i].first;
  }
  EXPECT_FALSE(at::equal(pa[0].second, pc[0].second));
  std::map<std::string, at::Tensor> by_name(pa.begin(), pa.end());
  EXPECT_TRUE(at::equal(by_name["blocks.1.mlp_norm.weight"], at::ones({o.dim})));
  // Sample standard deviations of 16k+ normal draws are within 3% of sigma.
  EXPECT_NEAR(by_name["blocks.0.attn.wq.weight"].std().item<double>(), 0.02, 0.02 * 0.03);
  const double residual = 0.02 / std::sqrt(2.0 * o.layers);
  EXPECT_NEAR(by_name["blocks.2.attn.wo.weight"].std().item<double>(), residual, residual * 0.03);
  EXPECT_NEAR(by_name["blocks.3.mlp.w2.weight"].std().item<double>(), residual, residual * 0.03);
}

TEST(LlamaTest, ForwardMatchesTheNaiveReference) {
  const ModelOptions o = smallOptions();
  Llama model = makeModel(o, 5);
  // Larger weights than the init make attention non-uniform, so the test sees RoPE and masking.
  {
    c10::NoGradGuard no_grad;
    for (auto& [name, p] : model->namedParameters()) {
      if (name.find("norm") == std::string::npos) p.mul_(10.0);
    }
  }
  const at::Tensor tokens = at::randint(0, o.vocab_size, {3, 17}, at::kLong);
  const at::Tensor logits = model->forward(tokens);
  const at::Tensor expected = test::referenceLogits(weightsOf(*model, at::kDouble, false), o, tokens);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  // float32 model vs float64 reference.
  EXPECT_LT((logits.to(at::kDouble) - expected).abs().max().item<double>(), 2e-4);
}

TEST(LlamaTest, GradientsMatchTheReference) {
  const ModelOptions o = smallOptions();
  Llama model = makeModel(o, 9);
  const at::Tensor tokens = at::randint(0, o.vocab_size, {2, 12}, at::kLong);
  const at::Tensor targets = at::randint(0, o.vocab_size, {2, 12}, at::kLong);
  crossEntropySum(model->forward(tokens), targets).backward();

  test::Weights ref = weightsOf(*model, at::kDouble, true);
  at::cross_entropy_loss(test::referenceLogits(ref, o, tokens).reshape({-1, o.vocab_size}), targets.reshape({-1}), {},
                         at::Reduction::Sum)
      .backward();
  for (const auto& [name, p] : model->namedParameters()) {
    const at::Tensor expected = ref.at(name).grad();
    const double scale = expected.abs().max().item<double>() + 1e-12;
    const double err = (p.grad().to(at::kDouble) - expected).abs().max().item<double>();
    EXPECT_LT(err / scale, 1e-4) << name;  // relative to the gradient's magnitude
  }
}

TEST(LlamaTest, FutureTokensNeverChangeEarlierLogits) {
  const ModelOptions o = smallOptions();
  Llama model = makeModel(o, 3);
  const at::Tensor tokens = at::randint(0, o.vocab_size, {2, 20}, at::kLong);
  const at::Tensor base = model->forward(tokens);
  for (int64_t t : {0, 7, 19}) {
    at::Tensor changed = tokens.clone();
    changed.narrow(1, t, 20 - t).random_(0, o.vocab_size);
    changed.select(1, t).fill_((tokens[0][t].item<int64_t>() + 1) % o.vocab_size);
    const at::Tensor out = model->forward(changed);
    if (t > 0) {
      EXPECT_TRUE(at::allclose(out.narrow(1, 0, t), base.narrow(1, 0, t), 0, 1e-6)) << "t=" << t;
    }
    EXPECT_FALSE(at::allclose(out.narrow(1, t, 1), base.narrow(1, t, 1), 0, 1e-6)) << "t=" << t;
  }
}

TEST(LlamaTest, CrossEntropySumIsTheSumOfTokenNegativeLogLikelihoods) {
  const at::Tensor logits = at::randn({2, 3, 5}, at::kDouble);
  const at::Tensor targets = at::tensor({0, 4, 2, 1, 1, 3}, at::kLong).view({2, 3});
  const at::Tensor logp = at::log_softmax(logits, -1);
  double expected = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 3; ++t) expected -= logp[b][t][targets[b][t].item<int64_t>()].item<double>();
  EXPECT_NEAR(crossEntropySum(logits, targets).item<double>(), expected, 1e-12);
}

TEST(LlamaTest, TrainingFlopsFollowTheStatedFormula) {
  const ModelOptions o = smallOptions();
  const double n = static_cast<double>(parameterCount(o) - o.vocab_size * o.dim);
  EXPECT_DOUBLE_EQ(trainingFlopsPerToken(o, 16), 6 * n + 12.0 * o.layers * o.heads * o.headDim() * 16);
}

}  // namespace
}  // namespace loom::model
