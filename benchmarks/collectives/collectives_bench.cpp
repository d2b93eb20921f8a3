// collectives_bench: nccl-tests-style size sweeps over loom's communicators.
//
//   loom-launch --nproc-per-node N -- collectives_bench [--backend gloo] [--min-bytes 8] [--max-bytes 64M]
//       [--factor 2] [--iters 20] [--warmup 5] [--dtype float32] [--ops all_reduce,all_gather,...]
//   mpirun --oversubscribe --bind-to none -np N collectives_bench --backend mpi ...
//
// Every rank joins the job the way loom-train does (runtime/dist/world.h). For
// each operation and size: `warmup` untimed operations, a barrier, `iters`
// operations each waited on before the next is issued (nccl-tests' -z 1), then
// one run on a known pattern whose result is compared with its closed form
// (nccl-tests' -c 1). Rank 0 prints one JSON object per (op, size):
//   {"op", "size", "count", "type", "redop", "root", "time_us", "algbw", "busbw", "wrong", "world", "backend", ...}
// time_us is the mean over iters on each rank, then the max over ranks; algbw =
// size / time (GB/s, 1e9 bytes); busbw = algbw * nccl-tests' factor
// (collective_case.h). Then this machine's memcpy bandwidth (one thread, all
// cores) as {"op": "memcpy", ...}, and a summary with the wrong-value count and
// each operation's average busbw. Exits 1 when any value was wrong.
#include "benchmarks/collectives/collective_case.h"
#include "benchmarks/collectives/memcpy_bandwidth.h"
#include "runtime/core/cli_main.h"
#include "runtime/core/error.h"
#include "runtime/core/thread_env.h"
#include "runtime/dist/identity.h"
#include "runtime/dist/world.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using loom::bench::CollectiveCase;
using loom::bench::CollectiveOp;

struct BenchOptions {
  std::string backend = "gloo";
  std::string min_bytes = "8";
  std::string max_bytes = "64M";
  double factor = 2;
  int iters = 20;
  int warmup = 5;
  std::string dtype = "float32";
  std::vector<std::string> ops = {"all_reduce", "all_gather", "reduce_scatter", "broadcast"};
  std::string memcpy_bytes = "256M";
  double timeout_s = 600;
};

/// "64M" -> 64 * 2^20 (K, M, G are powers of 1024, as in nccl-tests).
int64_t parseBytes(const std::string& text, const std::string& flag) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string suffix = text.substr(digits);
  const std::map<std::string, int64_t> scale = {{"", 1}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}};
  const auto unit = scale.find(suffix);
  LOOM_CHECK_INPUT(digits > 0 && digits <= 12 && unit != scale.end(), flag, " '", text,
                   "' is not a byte count: write digits with an optional K, M or G suffix, e.g. 64M");
  const int64_t number = std::stoll(text.substr(0, digits));
  LOOM_CHECK_INPUT(number >= 1 && number <= (int64_t{1} << 40) / unit->second, flag, " '", text,
                   "' is outside 1 byte to 1 TiB");
  return number * unit->second;
}

loom::CommBackend parseBackend(const std::string& name) {
  if (name == "gloo") return loom::CommBackend::kGloo;
  if (name == "mpi") return loom::CommBackend::kMpi;
  LOOM_THROW(loom::InputError, "--backend '", name, "' is not a CPU backend: choose gloo or mpi");
}

double maxOverRanks(loom::dist::Communicator& comm, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.allReduce(t, loom::dist::ReduceOp::kMax)->wait();
  return t.item<double>();
}

int64_t sumOverRanks(loom::dist::Communicator& comm, int64_t value) {
  at::Tensor t = at::full({1}, value, at::kLong);
  comm.allReduce(t, loom::dist::ReduceOp::kSum)->wait();
  return t.item<int64_t>();
}

/// Mean microseconds per operation on this rank, operations waited on one by one.
double timeOperations(CollectiveCase& c, loom::dist::Communicator& comm, const BenchOptions& opts) {
  c.zeroBuffers();
  for (int i = 0; i < opts.warmup; ++i) c.launch(comm)->wait();
  comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < opts.iters; ++i) c.launch(comm)->wait();
  const std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / opts.iters;
}

int runBench(const BenchOptions& opts) {
  const loom::dist::RankIdentity identity = loom::dist::identityFromEnvironment();
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(std::max(1, cores / std::max(1, identity.local_world_size)));
  loom::ParallelOptions parallel;
  parallel.backend = parseBackend(opts.backend);
  parallel.timeout_s = opts.timeout_s;
  const at::ScalarType dtype = loom::bench::parseDtype(opts.dtype, "--dtype");
  std::vector<CollectiveOp> ops;
  for (const std::string& name : opts.ops) ops.push_back(loom::bench::parseCollectiveOp(name, "--ops"));
  const int64_t min_bytes = parseBytes(opts.min_bytes, "--min-bytes");
  const int64_t max_bytes = parseBytes(opts.max_bytes, "--max-bytes");
  const int64_t memcpy_bytes = parseBytes(opts.memcpy_bytes, "--memcpy-bytes");
  LOOM_CHECK_INPUT(min_bytes <= max_bytes, "--min-bytes (", min_bytes, ") exceeds --max-bytes (", max_bytes, ")");

  const loom::dist::World world = loom::dist::joinWorld(identity, parallel);
  loom::dist::Communicator& comm = *world.comm;
  const bool lead = comm.rank() == 0;
  const nlohmann::ordered_json common = {{"world", comm.size()}, {"backend", comm.backendName()}};
  int64_t total_wrong = 0;
  nlohmann::ordered_json avg_busbw = nlohmann::ordered_json::object();
  for (CollectiveOp op : ops) {
    double busbw_sum = 0;
    int points = 0;
    int64_t previous_size = -1;
    for (int64_t bytes = min_bytes; bytes <= max_bytes;
         bytes = std::max(bytes + 1, static_cast<int64_t>(static_cast<double>(bytes) * opts.factor))) {
      CollectiveCase c(op, bytes, dtype, comm.rank(), comm.size());
      if (c.sizeBytes() == previous_size) continue;  // rounding to whole elements per rank gave the same case
      previous_size = c.sizeBytes();
      const double time_us = maxOverRanks(comm, timeOperations(c, comm, opts));
      c.fillCheckPattern();
      c.launch(comm)->wait();
      const int64_t wrong = sumOverRanks(comm, c.countWrong());
      total_wrong += wrong;
      const double algbw = static_cast<double>(c.sizeBytes()) / (time_us * 1e-6) / 1e9;
      const double busbw = algbw * c.busBandwidthFactor();
      busbw_sum += busbw;
      ++points;
      if (!lead) continue;
      nlohmann::ordered_json line = {{"op", loom::bench::collectiveOpName(op)},
                                     {"size", c.sizeBytes()},
                                     {"count", c.count()},
                                     {"type", opts.dtype},
                                     {"redop", c.redop()},
                                     {"root", c.root()},
                                     {"time_us", time_us},
                                     {"algbw", algbw},
                                     {"busbw", busbw},
                                     {"wrong", wrong},
                                     {"iters", opts.iters},
                                     {"warmup", opts.warmup}};
      line.update(common);
      std::cout << line.dump() << std::endl;
    }
    avg_busbw[loom::bench::collectiveOpName(op)] = points > 0 ? busbw_sum / points : 0.0;
  }

  // Rank 0 measures memcpy while the others sleep in the store (not in a
  // collective, which may poll a core under MPI), then everyone finishes.
  comm.barrier();
  const std::string memcpy_done = "collectives_bench/memcpy_done";
  if (lead) {
    for (int threads : {1, cores}) {
      const loom::bench::CopyBandwidth copy = loom::bench::measureMemcpy(memcpy_bytes, threads, 5);
      nlohmann::ordered_json line = {{"op", "memcpy"},          {"size", memcpy_bytes},   {"threads", threads},
                                     {"time_us", copy.time_us}, {"algbw", copy.gb_per_s}, {"busbw", copy.gb_per_s}};
      line.update(common);
      std::cout << line.dump() << std::endl;
      if (cores == 1) break;
    }
    nlohmann::ordered_json summary = {{"summary", true}, {"wrong", total_wrong}, {"avg_busbw", avg_busbw}};
    summary.update(common);
    std::cout << summary.dump() << std::endl;
    if (world.store) world.store->set(memcpy_done, std::vector<uint8_t>{1});
  } else {
    world.store->wait({memcpy_done});
  }
  if (total_wrong > 0) {
    std::cerr << "collectives_bench: " << total_wrong << " values differed from the expected results" << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  loom::reexecWithPassiveOpenMpWait(argv);
  CLI::App app{"Times loom's collectives over a range of sizes (nccl-tests columns, JSON lines).", "collectives_bench"};
  BenchOptions opts;
  app.add_option("--backend", opts.backend, "gloo or mpi (mpi: start with mpirun)");
  app.add_option("--min-bytes,-b", opts.min_bytes, "smallest size, e.g. 8, 4K, 1M");
  app.add_option("--max-bytes,-e", opts.max_bytes, "largest size");
  app.add_option("--factor,-f", opts.factor, "size multiplier between points")->check(CLI::Range(1.01, 1e6));
  app.add_option("--iters,-n", opts.iters, "timed operations per point")->check(CLI::PositiveNumber);
  app.add_option("--warmup,-w", opts.warmup, "untimed operations per point")->check(CLI::NonNegativeNumber);
  app.add_option("--dtype,-d", opts.dtype, "float32, float64, float16, bfloat16, int8, uint8, int32, int64");
  app.add_option("--ops,-o", opts.ops, "operations, comma-separated")->delimiter(',');
  app.add_option("--memcpy-bytes", opts.memcpy_bytes, "buffer size of the memcpy measurement");
  app.add_option("--timeout-s", opts.timeout_s, "seconds any operation may take")->check(CLI::PositiveNumber);
  return loom::runCliMain(app, argc, argv, [&] { return runBench(opts); });
}
