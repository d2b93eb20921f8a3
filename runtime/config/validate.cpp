#include "runtime/config/validate.h"

#include "runtime/core/build_config.h"
#include "runtime/core/error.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

namespace loom::config {
namespace {

// Collects violations; each check names the field path and the offending value.
class Checker {
 public:
  void require(bool ok, std::vector<std::string> fields, std::string message) {
    if (!ok) {
      violations_.push_back({std::move(fields), std::move(message)});
    }
  }

  void atLeast(const std::string& path, int64_t value, int64_t min) {
    require(value >= min, {path}, c10::str(path, " (", value, ") must be >= ", min));
  }

  void positive(const std::string& path, double value) { finiteAnd(path, value, value > 0, "> 0"); }

  void nonNegative(const std::string& path, double value) { finiteAnd(path, value, value >= 0, ">= 0"); }

  /// `value` must lie in [0, 1).
  void unitInterval(const std::string& path, double value) {
    require(value >= 0 && value < 1, {path}, c10::str(path, " (", value, ") must be in [0, 1)"));
  }

  std::vector<Violation> take() { return std::move(violations_); }

 private:
  // NaN fails every comparison but inf passes "> 0", so finiteness comes first.
  void finiteAnd(const std::string& path, double value, bool ok, const char* bound) {
    if (!std::isfinite(value)) {
      require(false, {path}, c10::str(path, " (", value, ") must be a finite number"));
    } else {
      require(ok, {path}, c10::str(path, " (", value, ") must be ", bound));
    }
  }

  std::vector<Violation> violations_;
};

void checkModel(const ModelOptions& m, const DataOptions& data, Checker& check) {
  check.require(m.vocab_size >= 257 && m.vocab_size <= 65536, {"model.vocab_size"},
                c10::str("model.vocab_size (", m.vocab_size,
                         ") must be in [257, 65536]: tokens are stored as uint16 and the byte tokenizer needs 257"));
  check.atLeast("model.dim", m.dim, 1);
  check.atLeast("model.layers", m.layers, 1);
  check.atLeast("model.heads", m.heads, 1);
  check.atLeast("model.ffn_dim", m.ffn_dim, 1);
  check.atLeast("model.kv_heads", m.kv_heads, 0);
  if (m.dim >= 1 && m.heads >= 1) {
    const bool divides = m.dim % m.heads == 0;
    check.require(divides, {"model.heads", "model.dim"},
                  c10::str("model.heads (", m.heads, ") must divide model.dim (", m.dim, ")"));
    check.require(!divides || m.headDim() % 2 == 0, {"model.dim", "model.heads"},
                  c10::str("the head dim model.dim / model.heads (", m.dim, " / ", m.heads, " = ", m.headDim(),
                           ") must be even: RoPE rotates pairs of features"));
  }
  if (m.heads >= 1 && m.kv_heads >= 0) {
    check.require(m.heads % m.kvHeads() == 0, {"model.kv_heads", "model.heads"},
                  c10::str("model.kv_heads (", m.kv_heads, ") must divide model.heads (", m.heads,
                           "); 0 means one key/value head per query head"));
  }
  check.positive("model.norm_eps", m.norm_eps);
  check.positive("model.rope_theta", m.rope_theta);
  check.positive("model.init_std", m.init_std);
  check.require(m.max_seq_len >= data.seq_len, {"model.max_seq_len", "data.seq_len"},
                c10::str("model.max_seq_len (", m.max_seq_len, ") must be >= data.seq_len (", data.seq_len, ")"));
}

void checkData(const DataOptions& d, Checker& check) {
  check.require(!d.train_path.empty(), {"data.train_path"},
                "data.train_path is empty: set it to the training token shard (.bin)");
  check.atLeast("data.seq_len", d.seq_len, 1);
}

// A micro-batch to suggest: the largest divisor of `n` that is <= `limit`
// (both >= 1). Absurdly large batches get gcd(n, limit) instead, also a
// divisor <= limit, so a config can never make validation loop for long.
int64_t divisorToSuggest(int64_t n, int64_t limit) {
  constexpr int64_t kSearchLimit = 1 << 16;
  if (std::min(n, limit) > kSearchLimit) {
    return std::gcd(n, limit);
  }
  for (int64_t d = std::min(n, limit); d > 1; --d) {
    if (n % d == 0) {
      return d;
    }
  }
  return 1;
}

void checkTrain(const TrainOptions& t, int world_size, Checker& check) {
  check.atLeast("train.steps", t.steps, 1);
  check.atLeast("train.global_batch", t.global_batch, 1);
  check.atLeast("train.micro_batch", t.micro_batch, 1);
  if (t.global_batch >= 1) {
    const bool even_split = t.global_batch % world_size == 0;
    check.require(
        even_split, {"train.global_batch"},
        c10::str("train.global_batch (", t.global_batch, ") must be divisible by the world size (", world_size, ")"));
    // A micro_batch above the per-rank batch means one pass over the whole
    // per-rank batch, so one config serves every world size that divides it.
    const int64_t per_rank = t.global_batch / world_size;
    if (even_split && t.micro_batch >= 1 && t.micro_batch < per_rank && per_rank % t.micro_batch != 0) {
      const int64_t suggestion = divisorToSuggest(per_rank, t.micro_batch);
      const int64_t accumulation = per_rank / suggestion;
      check.require(
          false, {"train.micro_batch", "train.global_batch"},
          c10::str("train.micro_batch (", t.micro_batch,
                   ") must divide the per-rank batch (train.global_batch / world size = ", t.global_batch, " / ",
                   world_size, " = ", per_rank, "): ", per_rank, " / ", t.micro_batch,
                   " is not a whole number of accumulation steps; e.g. micro_batch ", suggestion, " accumulates ",
                   accumulation, accumulation == 1 ? " micro-batch" : " micro-batches", " per step"));
    }
  }
  check.atLeast("train.threads", t.threads, 0);
  check.require(!t.out_dir.empty(), {"train.out_dir"}, "train.out_dir is empty: set the run's output directory");
  check.atLeast("train.checkpoint_every", t.checkpoint_every, 0);
  check.atLeast("train.keep_checkpoints", t.keep_checkpoints, 1);
  check.atLeast("train.val_every", t.val_every, 0);
  check.atLeast("train.val_batches", t.val_batches, 1);
  check.nonNegative("train.grad_clip", t.grad_clip);
}

void checkOptimizer(const OptimizerOptions& o, Checker& check) {
  check.positive("optimizer.lr", o.lr);
  check.nonNegative("optimizer.min_lr", o.min_lr);
  if (std::isfinite(o.lr) && std::isfinite(o.min_lr)) {
    check.require(o.min_lr <= o.lr, {"optimizer.min_lr", "optimizer.lr"},
                  c10::str("optimizer.min_lr (", o.min_lr, ") must be <= optimizer.lr (", o.lr, ")"));
  }
  check.atLeast("optimizer.warmup_steps", o.warmup_steps, 0);
  check.unitInterval("optimizer.beta1", o.beta1);
  check.unitInterval("optimizer.beta2", o.beta2);
  check.positive("optimizer.eps", o.eps);
  check.nonNegative("optimizer.weight_decay", o.weight_decay);
}

void checkTensorParallel(const JobOptions& job, int world_size, Checker& check) {
  const ParallelOptions& p = job.parallel;
  check.atLeast("parallel.token_split_min_tokens", p.token_split_min_tokens, 0);
  check.atLeast("parallel.tp", p.tp, 1);
  if (p.tp <= 1) return;
  check.require(world_size % p.tp == 0, {"parallel.tp"},
                c10::str("parallel.tp (", p.tp, ") must divide the world size (", world_size,
                         "): ranks form groups of tp consecutive ranks"));
  const ModelOptions& m = job.model;
  check.require(m.heads % p.tp == 0 && m.kvHeads() % p.tp == 0 && m.ffn_dim % p.tp == 0,
                {"parallel.tp", "model.heads", "model.kv_heads", "model.ffn_dim"},
                c10::str("parallel.tp (", p.tp, ") must divide model.heads (", m.heads, "), the kv heads (",
                         m.kvHeads(), ") and model.ffn_dim (", m.ffn_dim, "): each rank holds 1/tp of them"));
  check.require(!job.elastic.enabled(), {"parallel.tp", "elastic.policy"},
                "parallel.tp > 1 with elastic.policy is not supported yet (a lost rank takes a shard no buddy "
                "holds); set parallel.tp: 1 or elastic.policy: NONE");
}

void checkParallel(const ParallelOptions& p, int world_size, Checker& check) {
  const int64_t dp = p.dataParallelSize(world_size);
  check.require(p.dp == -1 || p.dp == dp, {"parallel.dp"},
                p.tp == 1 ? c10::str("parallel.dp (", p.dp, ") must equal the world size (", world_size, ") or be -1")
                          : c10::str("parallel.dp (", p.dp, ") must equal the world size / parallel.tp (", dp,
                                     ") or be -1"));
  check.positive("parallel.bucket_mb", p.bucket_mb);
  check.positive("parallel.timeout_s", p.timeout_s);
  check.require(p.backend != CommBackend::kMpi || LOOM_WITH_MPI, {"parallel.backend"},
                "parallel.backend (MPI) is not built into this loom: rebuild with -DLOOM_WITH_MPI=ON "
                "(install libopenmpi-dev) or use GLOO");
  check.require(p.backend != CommBackend::kNccl || LOOM_WITH_NCCL, {"parallel.backend"},
                "parallel.backend (NCCL) is not built into this loom: rebuild with -DLOOM_WITH_NCCL=ON "
                "(needs CUDA and NCCL) or use GLOO");
}

const char* algorithmName(OuterAlgorithm algorithm) {
  switch (algorithm) {
    case OuterAlgorithm::kNone:
      return "NONE";
    case OuterAlgorithm::kDiLoCo:
      return "DILOCO";
    case OuterAlgorithm::kNoLoCo:
      return "NOLOCO";
    case OuterAlgorithm::kCo2:
      return "CO2";
  }
  LOOM_CHECK(false, "unknown OuterAlgorithm ", static_cast<int>(algorithm));
}

void checkElastic(const ElasticOptions& e, const JobOptions& job, int world_size, Checker& check) {
  check.atLeast("elastic.min_ranks", e.min_ranks, 1);
  check.atLeast("elastic.max_ranks", e.max_ranks, 0);
  check.positive("elastic.heartbeat_interval_s", e.heartbeat_interval_s);
  check.positive("elastic.rebuild_timeout_s", e.rebuild_timeout_s);
  check.positive("elastic.poll_interval_s", e.poll_interval_s);
  check.nonNegative("elastic.join_timeout_s", e.join_timeout_s);
  check.require(e.heartbeat_timeout_s > e.heartbeat_interval_s, {"elastic.heartbeat_timeout_s"},
                c10::str("elastic.heartbeat_timeout_s (", e.heartbeat_timeout_s,
                         ") must exceed elastic.heartbeat_interval_s (", e.heartbeat_interval_s,
                         "): a healthy rank must beat several times per timeout"));
  if (!e.enabled()) return;
  check.require(e.min_ranks <= world_size, {"elastic.min_ranks"},
                c10::str("elastic.min_ranks (", e.min_ranks, ") exceeds the starting world size (", world_size,
                         "): the job could never run; lower it or start more ranks"));
  check.require(e.max_ranks == 0 || e.max_ranks >= world_size, {"elastic.max_ranks"},
                c10::str("elastic.max_ranks (", e.max_ranks, ") is below the starting world size (", world_size,
                         "): raise it, or 0 for the starting size"));
  check.require(job.parallel.backend == CommBackend::kGloo, {"elastic.policy", "parallel.backend"},
                "elastic.policy needs parallel.backend GLOO: MPI cannot replace a lost rank and NCCL shrink is not "
                "wired in yet; set parallel.backend: GLOO or elastic.policy: NONE");
  check.require(job.outer.algorithm == OuterAlgorithm::kNone || !job.parallel.zero1,
                {"elastic.policy", "outer.algorithm", "parallel.zero1"},
                "elastic.policy with an outer optimizer needs parallel.zero1: false (a replica's optimizer shards "
                "are not copied to buddies yet, docs/elastic.md); drop parallel.zero1 or set elastic.policy: NONE");
}

void checkOuter(const OuterOptions& outer, const ParallelOptions& parallel, int world_size, Checker& check) {
  const char* algorithm = algorithmName(outer.algorithm);
  check.atLeast("outer.sync_every", outer.sync_every, 1);
  check.nonNegative("outer.lr", outer.lr);
  check.require(outer.momentum == -1 || (outer.momentum >= 0 && outer.momentum < 1), {"outer.momentum"},
                c10::str("outer.momentum (", outer.momentum, ") must be in [0, 1), or -1 for the algorithm's default"));
  if (outer.consensus != -1) {
    check.require(std::isfinite(outer.consensus) && outer.consensus >= 0, {"outer.consensus"},
                  c10::str("outer.consensus (", outer.consensus,
                           ") must be a finite number >= 0, or -1 to use the outer learning rate"));
  }
  check.atLeast("outer.replicas", outer.replicas, 0);
  check.atLeast("outer.fragments", outer.fragments, 1);
  check.atLeast("outer.fragment_delay", outer.fragment_delay, 0);
  if (outer.sync_every >= 1 && outer.fragments >= 1) {
    const bool divides = outer.sync_every % outer.fragments == 0;
    check.require(
        divides, {"outer.sync_every", "outer.fragments"},
        c10::str("outer.sync_every (", outer.sync_every, ") must be a multiple of outer.fragments (", outer.fragments,
                 "): each fragment syncs every sync_every steps, one every sync_every / fragments"));
    const int64_t interval = outer.sync_every / outer.fragments;
    check.require(!divides || outer.fragment_delay < interval,
                  {"outer.fragment_delay", "outer.sync_every", "outer.fragments"},
                  c10::str("outer.fragment_delay (", outer.fragment_delay,
                           ") must be < outer.sync_every / outer.fragments (", outer.sync_every, " / ", outer.fragments,
                           " = ", interval, "): a fragment's sync must land before the next fragment's starts"));
  }
  check.require(outer.fragment_alpha >= 0 && outer.fragment_alpha <= 1, {"outer.fragment_alpha"},
                c10::str("outer.fragment_alpha (", outer.fragment_alpha, ") must be in [0, 1]"));
  check.atLeast("outer.group_size", outer.group_size, 2);
  check.positive("outer.staleness_penalty", outer.staleness_penalty);
  check.nonNegative("outer.clip", outer.clip);

  const bool diloco = outer.algorithm == OuterAlgorithm::kDiLoCo;
  check.require(!outer.delayed || diloco, {"outer.delayed", "outer.algorithm"},
                c10::str("outer.delayed (true) needs outer.algorithm DILOCO (not ", algorithm,
                         "): only DiLoCo has a delayed (async) variant; set outer.delayed: false"));
  check.require(!outer.delayed || !diloco || outer.fragments <= 1, {"outer.delayed", "outer.fragments"},
                c10::str("outer.delayed (true) needs outer.fragments 1 (not ", outer.fragments,
                         "): async DiLoCo is not combined with streaming fragments (outer.fragment_delay is "
                         "streaming's overlap); drop outer.delayed or set outer.fragments: 1"));
  const std::string streaming_only =
      c10::str(" is streaming DiLoCo's and needs outer.algorithm DILOCO (not ", algorithm, ")");
  check.require(diloco || outer.fragments <= 1, {"outer.fragments", "outer.algorithm"},
                c10::str("outer.fragments (", outer.fragments, ")", streaming_only, "; set outer.fragments: 1"));
  check.require(
      diloco || outer.fragment_delay <= 0, {"outer.fragment_delay", "outer.algorithm"},
      c10::str("outer.fragment_delay (", outer.fragment_delay, ")", streaming_only, "; set outer.fragment_delay: 0"));
  check.require(
      diloco || !(outer.fragment_alpha > 0), {"outer.fragment_alpha", "outer.algorithm"},
      c10::str("outer.fragment_alpha (", outer.fragment_alpha, ")", streaming_only, "; set outer.fragment_alpha: 0"));

  if (outer.algorithm != OuterAlgorithm::kNone && outer.replicas >= 0) {
    const int64_t replicas = outer.replicas == 0 ? world_size : outer.replicas;
    const bool divides = world_size % replicas == 0;
    check.require(divides, {"outer.replicas"},
                  c10::str("outer.replicas (", replicas, ") must divide the world size (", world_size,
                           "): every replica has the same number of ranks"));
    check.require(!divides || !parallel.zero1 || replicas < world_size, {"parallel.zero1", "outer.replicas"},
                  c10::str("parallel.zero1 (true) with outer.replicas (", replicas, ") = the world size: each rank is ",
                           "its own replica, so there is no data-parallel group inside a replica to shard over; set ",
                           "outer.replicas to fewer than the ranks, or drop parallel.zero1"));
    check.require(
        outer.algorithm != OuterAlgorithm::kNoLoCo || outer.group_size < 2 || replicas % outer.group_size == 0,
        {"outer.group_size", "outer.replicas"},
        c10::str("outer.group_size (", outer.group_size, ") must divide the number of replicas (", replicas,
                 "): NoLoCo partitions the replicas into equal groups every sync"));
  }
}

// The largest power of two <= n (n >= 1): the largest aligned group a pool of n ranks has.
int64_t largestPowerOfTwo(int64_t n) {
  int64_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

void checkContext(const JobOptions& job, int world_size, Checker& check) {
  const ContextOptions& c = job.context;
  if (!c.documents()) return;
  check.atLeast("context.capacity", c.capacity, 1);
  check.atLeast("context.min_tokens", c.min_tokens, 1);
  check.positive("context.median_tokens", c.median_tokens);
  check.nonNegative("context.sigma", c.sigma);
  check.require(c.max_tokens >= 2 * c.min_tokens - 1, {"context.max_tokens", "context.min_tokens"},
                c10::str("context.max_tokens (", c.max_tokens, ") must be >= 2 * context.min_tokens - 1 (",
                         2 * c.min_tokens - 1, "): every step's last document must fit in [min, max]"));
  check.require(c.tokens_per_step >= c.min_tokens && c.min_tokens >= 1 &&
                    c.tokens_per_step / c.min_tokens < (int64_t{1} << 20),
                {"context.tokens_per_step"},
                c10::str("context.tokens_per_step (", c.tokens_per_step, ") must be >= context.min_tokens (",
                         c.min_tokens, ") and hold fewer than 2^20 documents"));
  check.require(c.max_tokens <= job.model.max_seq_len, {"context.max_tokens", "model.max_seq_len"},
                c10::str("context.max_tokens (", c.max_tokens, ") exceeds model.max_seq_len (", job.model.max_seq_len,
                         "): RoPE has no positions for longer documents"));
  check.require(job.outer.algorithm == OuterAlgorithm::kNone, {"context.mode", "outer.algorithm"},
                "context.mode STATIC or HDP with an outer optimizer is not supported yet: set outer.algorithm: NONE");
  if (c.capacity < 1) return;
  if (c.mode == ContextMode::kHdp) {
    // An elastic job may shrink to elastic.min_ranks: every document must fit that pool too.
    const int64_t smallest = job.elastic.enabled() ? std::max<int64_t>(1, job.elastic.min_ranks) : world_size;
    const int64_t group = largestPowerOfTwo(smallest);
    check.require(c.max_tokens <= group * c.capacity, {"context.max_tokens", "context.capacity"},
                  c10::str("context.max_tokens (", c.max_tokens, ") exceeds the largest group of ", group,
                           " rank(s) x context.capacity (", c.capacity, ") = ", group * c.capacity,
                           job.elastic.enabled() ? " at elastic.min_ranks" : "",
                           ": raise the capacity or lower max_tokens"));
  } else {
    int64_t cp = c.cp;
    if (cp == 0) {
      cp = 1;
      while (cp * c.capacity < c.max_tokens) cp *= 2;
    }
    check.require(cp >= 1 && (cp & (cp - 1)) == 0 && world_size % cp == 0, {"context.cp"},
                  c10::str("context.cp (", cp, c.cp == 0 ? ", sized for max_tokens" : "",
                           ") must be a power of two dividing the world size (", world_size, ")"));
    check.require(c.max_tokens <= cp * c.capacity, {"context.max_tokens", "context.cp"},
                  c10::str("context.max_tokens (", c.max_tokens, ") exceeds context.cp x context.capacity (",
                           cp * c.capacity, ")"));
    check.require(!job.elastic.enabled(), {"context.mode", "elastic.policy"},
                  "context.mode STATIC cannot re-plan over the survivors of a lost rank: use HDP with elastic.policy");
  }
}

}  // namespace

std::vector<Violation> findViolations(const JobOptions& options, int world_size) {
  LOOM_CHECK(world_size >= 1, "findViolations needs world_size >= 1, got ", world_size);
  Checker check;
  checkModel(options.model, options.data, check);
  checkData(options.data, check);
  // Data parallelism, batches, replicas and context groups span the
  // tensor-parallel groups, not the ranks.
  const int data_world = static_cast<int>(options.parallel.dataParallelSize(world_size));
  checkTrain(options.train, data_world, check);
  checkParallel(options.parallel, world_size, check);
  checkTensorParallel(options, world_size, check);
  checkOptimizer(options.optimizer, check);
  checkOuter(options.outer, options.parallel, data_world, check);
  checkElastic(options.elastic, options, world_size, check);
  checkContext(options, data_world, check);
  check.atLeast("logging.log_every", options.logging.log_every, 1);
  check.nonNegative("logging.peak_tflops", options.logging.peak_tflops);
  return check.take();
}

std::string formatViolations(const std::vector<Violation>& violations, const FieldOrigins& origins) {
  std::string text;
  for (const Violation& violation : violations) {
    if (!text.empty()) {
      text += "\n";
    }
    for (const std::string& field : violation.fields) {
      const auto origin = origins.find(field);
      if (origin != origins.end()) {
        text += origin->second + ": ";
        break;
      }
    }
    text += violation.message;
  }
  return text;
}

void validate(const JobOptions& options, int world_size) {
  LOOM_CHECK_INPUT(world_size >= 1, "the world size (", world_size, ") must be >= 1");
  const std::vector<Violation> violations = findViolations(options, world_size);
  LOOM_CHECK_INPUT(violations.empty(), formatViolations(violations, {}));
}

}  // namespace loom::config
