// model_ops_bench: loom's rope, causal_softmax and swiglu ops (kernels/torch/*_ops.h)
// against the plain-libtorch composites they replace in the model (model/rope.cpp's
// unflatten/select/stack chain, model/attention.cpp's scale + mask-add + softmax,
// model/mlp.cpp's silu(a) * b), on the CPU at the tiny model's shapes (configs/tiny.pbtxt),
// forward alone and forward + backward through autograd.
//
// Prints one JSON object per line and measurement:
//   {"op", "pass", "shape", "dtype", "threads", "reps", "loom_us", "reference_us", "speedup"}
// times are medians over --reps timed runs after --warmup untimed ones;
// speedup = reference_us / loom_us.
#include "benchmarks/kernels/median_timer.h"
#include "kernels/torch/causal_softmax_ops.h"
#include "kernels/torch/rope_ops.h"
#include "kernels/torch/swiglu_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

namespace {

struct BenchOptions {
  int reps = 30;
  int warmup = 5;
  std::vector<int> threads = {1, 2};
  std::vector<std::string> dtypes = {"float32"};
  std::vector<std::string> ops = {"rope", "causal_softmax", "swiglu"};
};

/// One measurement's inputs (autograd leaves when the backward is timed) and the
/// upstream gradient, shaped like the op's output.
struct Case {
  std::vector<at::Tensor> inputs;
  at::Tensor dy;
};

using OpFn = std::function<at::Tensor(const Case&)>;
using MakeCase = std::function<Case(at::ScalarType, bool requires_grad)>;

double medianMicros(const std::function<void()>& fn, const BenchOptions& opts) {
  return loom::bench::medianMicros(fn, opts.warmup, opts.reps);
}

std::function<void()> pass(const OpFn& op, const Case& c, bool backward) {
  return [op, c, backward] {
    const at::Tensor out = op(c);
    if (backward) {
      torch::autograd::backward({out}, {c.dy});
      for (const at::Tensor& leaf : c.inputs) {
        if (leaf.requires_grad()) {
          leaf.mutable_grad().reset();
        }
      }
    }
  };
}

void runCase(const std::string& name, const OpFn& loom_op, const OpFn& reference_op, const MakeCase& make_case,
             at::ScalarType dtype, const BenchOptions& opts) {
  for (bool backward : {false, true}) {
    at::manual_seed(0);
    const Case c = make_case(dtype, backward);
    for (int threads : opts.threads) {
      at::set_num_threads(threads);
      const double loom_us = medianMicros(pass(loom_op, c, backward), opts);
      const double reference_us = medianMicros(pass(reference_op, c, backward), opts);
      const nlohmann::json line = {{"op", name},
                                   {"pass", backward ? "forward+backward" : "forward"},
                                   {"shape", c.dy.sizes().vec()},
                                   {"dtype", std::string(c10::toString(dtype))},
                                   {"threads", threads},
                                   {"reps", opts.reps},
                                   {"loom_us", loom_us},
                                   {"reference_us", reference_us},
                                   {"speedup", reference_us / loom_us}};
      std::cout << line.dump() << std::endl;
    }
  }
}

// The tiny model: batch 16, seq 128, 4 heads (2 KV heads, groups of 2) of 32, ffn 384.
constexpr int64_t kBatch = 16;
constexpr int64_t kSeq = 128;
constexpr int64_t kHeads = 4;
constexpr int64_t kHeadDim = 32;
constexpr int64_t kAttentionMatrices = kBatch * 2 * 2;
constexpr int64_t kFfnDim = 384;
constexpr int64_t kMaxSeqLen = 1024;

/// model/rope.cpp's composite, tables cast to x's dtype as the model does.
at::Tensor compositeRope(const at::Tensor& x, const at::Tensor& cos_table, const at::Tensor& sin_table) {
  const int64_t seq = x.size(1);
  const int64_t pairs = x.size(3) / 2;
  const at::Tensor cos = cos_table.narrow(0, 0, seq).view({1, seq, 1, pairs}).to(x.scalar_type());
  const at::Tensor sin = sin_table.narrow(0, 0, seq).view({1, seq, 1, pairs}).to(x.scalar_type());
  const at::Tensor pairs_view = x.unflatten(-1, {pairs, 2});
  const at::Tensor even = pairs_view.select(-1, 0);
  const at::Tensor odd = pairs_view.select(-1, 1);
  return at::stack({even * cos - odd * sin, even * sin + odd * cos}, -1).flatten(-2);
}

/// model/attention.cpp's composite: scale, a fresh -inf mask above the diagonal, softmax.
at::Tensor compositeCausalSoftmax(const at::Tensor& scores, double scale) {
  const int64_t seq = scores.size(-1);
  const at::Tensor mask = at::full({seq, seq}, -std::numeric_limits<float>::infinity(), scores.options()).triu(1);
  return at::softmax(scores * scale + mask, -1);
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions opts;
  CLI::App app{"Times loom's rope, causal_softmax and swiglu ops against plain-libtorch composites (JSON lines)."};
  app.add_option("--reps", opts.reps, "timed runs per measurement (median reported)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", opts.warmup, "untimed runs before timing")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", opts.threads, "intra-op thread counts to measure")->check(CLI::PositiveNumber);
  app.add_option("--dtypes", opts.dtypes, "dtypes to measure")->check(CLI::IsMember({"float32", "float64"}));
  app.add_option("--ops", opts.ops, "ops to measure")->check(CLI::IsMember({"rope", "causal_softmax", "swiglu"}));
  CLI11_PARSE(app, argc, argv);

  // model/rope.cpp's tables: angles in double, stored as float32.
  const at::Tensor inv_freq =
      at::pow(10000.0, at::arange(0, kHeadDim / 2, at::kDouble) * (-2.0 / static_cast<double>(kHeadDim)));
  const at::Tensor angles = at::outer(at::arange(kMaxSeqLen, at::kDouble), inv_freq);
  const at::Tensor cos_table = angles.cos().to(at::kFloat);
  const at::Tensor sin_table = angles.sin().to(at::kFloat);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));

  const MakeCase rope_case = [](at::ScalarType dtype, bool requires_grad) {
    const std::vector<int64_t> shape = {kBatch, kSeq, kHeads, kHeadDim};
    return Case{{at::randn(shape, dtype).requires_grad_(requires_grad)}, at::randn(shape, dtype)};
  };
  const MakeCase softmax_case = [](at::ScalarType dtype, bool requires_grad) {
    const std::vector<int64_t> shape = {kAttentionMatrices, kSeq, kSeq};
    return Case{{at::randn(shape, dtype).requires_grad_(requires_grad)}, at::randn(shape, dtype)};
  };
  const MakeCase swiglu_case = [](at::ScalarType dtype, bool requires_grad) {
    const std::vector<int64_t> shape = {kBatch * kSeq, kFfnDim};
    return Case{
        {at::randn(shape, dtype).requires_grad_(requires_grad), at::randn(shape, dtype).requires_grad_(requires_grad)},
        at::randn(shape, dtype)};
  };

  struct Op {
    std::string name;
    OpFn loom_op, reference_op;
    MakeCase make_case;
  };
  const std::vector<Op> ops = {
      {"rope", [&](const Case& c) { return loom::kernels::rope(c.inputs[0], cos_table, sin_table, 0); },
       [&](const Case& c) { return compositeRope(c.inputs[0], cos_table, sin_table); }, rope_case},
      {"causal_softmax", [&](const Case& c) { return loom::kernels::causalSoftmax(c.inputs[0], scale); },
       [&](const Case& c) { return compositeCausalSoftmax(c.inputs[0], scale); }, softmax_case},
      {"swiglu", [](const Case& c) { return loom::kernels::swiglu(c.inputs[0], c.inputs[1]); },
       [](const Case& c) { return at::silu(c.inputs[0]) * c.inputs[1]; }, swiglu_case}};
  for (const std::string& dtype_name : opts.dtypes) {
    const at::ScalarType dtype = dtype_name == "float32" ? at::kFloat : at::kDouble;
    for (const Op& op : ops) {
      if (std::find(opts.ops.begin(), opts.ops.end(), op.name) != opts.ops.end()) {
        runCase(op.name, op.loom_op, op.reference_op, op.make_case, dtype, opts);
      }
    }
  }
  return 0;
}
