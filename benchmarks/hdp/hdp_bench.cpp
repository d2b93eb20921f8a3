// One worker of the HDP benchmark (benchmarks/hdp_bench.py runs 4 of them under
// loom-launch; docs/benchmarks.md "HDP"). Every step takes the same documents
// from the DocumentSampler (a long-tail length mix cut from the shard), plans
// them in one of three ways and runs forward, backward and the step's one
// gradient all-reduce over the pool:
//   hdp     planHdp: each sequence on the smallest aligned group that fits it
//   static  a static dp x cp mesh sized for the longest possible sequence
//           (cp = staticCp(max_tokens, capacity)), rows packed up to cp x capacity
//   dp      pure data parallelism: static with cp 1 (every sequence must fit a rank)
// Rank 0 prints one JSON line per step and a summary: tokens/s, the measured
// imbalance of the ranks' compute time (max / mean), the planner's estimated
// imbalance, and the bytes all ranks sent per step.
#include "model/init.h"
#include "model/llama.h"
#include "parallel/group_cache.h"
#include "parallel/hdp_plan.h"
#include "parallel/static_plan.h"
#include "runtime/core/error.h"
#include "runtime/dist/identity.h"
#include "runtime/dist/world.h"
#include "train/data/document_sampler.h"
#include "train/hdp_step.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

namespace loom::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode = "hdp";
  std::string data = "data/brown/train.bin";
  int64_t steps = 4;
  int64_t warmup = 1;
  int64_t capacity = 1024;
  int64_t tokens_per_step = 8192;
  double median = 512;
  double sigma = 1.2;
  int64_t max_tokens = 4096;
  int64_t dim = 128;
  int64_t layers = 2;
  uint64_t seed = 1;
};

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double reduce(dist::Communicator& comm, double value, dist::ReduceOp op) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.allReduce(t, op)->wait();
  return t.item<double>();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int run(const Args& args) {
  ParallelOptions parallel;
  parallel.timeout_s = 600;
  dist::World world = dist::joinWorld(dist::identityFromEnvironment(), parallel);
  dist::Communicator& pool = *world.comm;
  const int rank = pool.rank();
  LOOM_CHECK_INPUT(args.mode == "hdp" || args.mode == "static" || args.mode == "dp", "--mode ", args.mode,
                   " must be hdp, static or dp");

  ModelOptions model_opts;
  model_opts.vocab_size = 257;
  model_opts.dim = args.dim;
  model_opts.layers = args.layers;
  model_opts.heads = 4;
  model_opts.kv_heads = 2;
  model_opts.ffn_dim = 3 * args.dim;
  model_opts.max_seq_len = args.max_tokens;
  model::Llama model(model_opts);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(args.seed);
  model::initializeParameters(*model, gen);

  data::DocumentOptions docs;
  docs.lognormal_mu = std::log(args.median);
  docs.lognormal_sigma = args.sigma;
  docs.max_tokens = args.max_tokens;
  docs.tokens_per_step = args.tokens_per_step;
  docs.seed = args.seed;
  const data::DocumentSampler sampler(data::TokenShard::open(args.data, 257), docs);
  parallel::GroupCache groups(pool);
  const int cp = args.mode == "static" ? parallel::staticCp(args.max_tokens, args.capacity) : 1;

  std::vector<double> tokens_per_s, busy_imbalance, planned_imbalance, bytes;
  for (int64_t step = 0; step < args.warmup + args.steps; ++step) {
    std::vector<at::Tensor> sequences;
    std::vector<int64_t> lengths;
    for (const data::Document& d : sampler.step(step)) {
      sequences.push_back(sampler.tokens(d));
      lengths.push_back(d.length);
    }
    for (const at::Tensor& p : model->parameters()) {
      if (p.grad().defined()) p.grad().zero_();
    }
    const int64_t bytes_before = pool.bytesSent() + groups.bytesSent();
    pool.barrier();
    const auto start = Clock::now();
    double planned = 1;
    train::HdpRankResult result;
    if (args.mode == "hdp") {
      parallel::HdpOptions opts{pool.size(), args.capacity, 1.0, 12.0 * static_cast<double>(args.dim)};
      const parallel::HdpPlan plan = parallel::planHdp(lengths, opts);
      planned = plan.imbalance();
      result = train::runHdpStep(*model, plan, sequences, groups);
    } else {
      const parallel::StaticPlan plan = parallel::planStatic(lengths, pool.size(), cp, args.capacity);
      planned = plan.imbalance();
      result = train::runStaticStep(*model, plan, sequences, groups);
    }
    const double busy_ms = msSince(start);
    // The step's one gradient reduction over the pool, as one flat buffer.
    std::vector<at::Tensor> grads;
    for (const at::Tensor& p : model->parameters()) {
      grads.push_back(p.grad().defined() ? p.grad().reshape({-1}) : at::zeros({p.numel()}));
    }
    at::Tensor flat = at::cat(grads);
    pool.allReduce(flat, dist::ReduceOp::kSum)->wait();
    const double step_ms = reduce(pool, msSince(start), dist::ReduceOp::kMax);
    const double busy_max = reduce(pool, busy_ms, dist::ReduceOp::kMax);
    const double busy_mean = reduce(pool, busy_ms, dist::ReduceOp::kSum) / pool.size();
    const double sent = reduce(pool, static_cast<double>(pool.bytesSent() + groups.bytesSent() - bytes_before),
                               dist::ReduceOp::kSum);
    const double tokens = reduce(pool, static_cast<double>(result.tokens), dist::ReduceOp::kSum);
    LOOM_CHECK(tokens == static_cast<double>(args.tokens_per_step), "step ", step, " computed ", tokens,
               " tokens, not ", args.tokens_per_step);
    if (step < args.warmup) continue;
    tokens_per_s.push_back(tokens / (step_ms / 1e3));
    busy_imbalance.push_back(busy_max / busy_mean);
    planned_imbalance.push_back(planned);
    bytes.push_back(sent);
    if (rank == 0) {
      std::cout << nlohmann::json{{"mode", args.mode},          {"step", step},
                                  {"sequences", lengths.size()}, {"longest", *std::max_element(lengths.begin(), lengths.end())},
                                  {"step_ms", step_ms},          {"tokens_per_s", tokens_per_s.back()},
                                  {"busy_imbalance", busy_imbalance.back()},
                                  {"planned_imbalance", planned},
                                  {"bytes_sent", sent}}
                       .dump()
                << std::endl;
    }
  }
  if (rank == 0) {
    std::cout << nlohmann::json{{"summary", "hdp_bench"},
                                {"mode", args.mode},
                                {"ranks", pool.size()},
                                {"cp", cp},
                                {"capacity", args.capacity},
                                {"tokens_per_step", args.tokens_per_step},
                                {"max_tokens", args.max_tokens},
                                {"tokens_per_s", median(tokens_per_s)},
                                {"busy_imbalance", median(busy_imbalance)},
                                {"planned_imbalance", median(planned_imbalance)},
                                {"bytes_sent_per_step", median(bytes)}}
                     .dump()
              << std::endl;
  }
  return 0;
}

}  // namespace
}  // namespace loom::bench

int main(int argc, char** argv) {
  loom::bench::Args args;
  CLI::App app{"One worker of the HDP benchmark (run it through benchmarks/hdp_bench.py)"};
  app.add_option("--mode", args.mode, "hdp, static or dp");
  app.add_option("--data", args.data, "token shard");
  app.add_option("--steps", args.steps, "timed steps");
  app.add_option("--warmup", args.warmup, "untimed steps first");
  app.add_option("--capacity", args.capacity, "tokens a rank holds at once (C)");
  app.add_option("--tokens-per-step", args.tokens_per_step, "tokens of every step's documents");
  app.add_option("--median", args.median, "median document length (lognormal)");
  app.add_option("--sigma", args.sigma, "lognormal sigma of the document length");
  app.add_option("--max-tokens", args.max_tokens, "longest document");
  app.add_option("--dim", args.dim, "model width");
  app.add_option("--layers", args.layers, "model layers");
  app.add_option("--seed", args.seed, "data and model seed");
  CLI11_PARSE(app, argc, argv);
  try {
    return loom::bench::run(args);
  } catch (const std::exception& e) {
    std::cerr << "hdp_bench: " << e.what() << std::endl;
    return 1;
  }
}
