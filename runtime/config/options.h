// Plain option structs: what every layer below the config loader takes.
//
// Protobuf stops at runtime/config (ARCHITECTURE.md §1): the loader parses a
// text config, converts it here exactly once, and validates it. The in-class
// initialisers below ARE loom's defaults; docs/config.md and loom.proto repeat
// them, and tests/runtime/config keeps the three in agreement.
#pragma once

#include "runtime/core/logging.h"

#include <cstdint>
#include <string>

namespace loom {

/// Llama-style decoder shape (docs/model.md).
struct ModelOptions {
  int64_t vocab_size = 257;    ///< tokens; byte-level tokenizer: 256 bytes + end-of-document
  int64_t dim = 128;           ///< model width d
  int64_t layers = 4;          ///< transformer blocks
  int64_t heads = 4;           ///< query heads; must divide dim
  int64_t kv_heads = 0;        ///< key/value heads; 0 means = heads; must divide heads
  int64_t ffn_dim = 384;       ///< SwiGLU hidden width f
  double norm_eps = 1e-5;      ///< RMSNorm epsilon
  double rope_theta = 10000;   ///< RoPE base
  double init_std = 0.02;      ///< std of the normal initialisation (docs/model.md)
  int64_t max_seq_len = 1024;  ///< longest sequence the RoPE table covers

  int64_t headDim() const { return dim / heads; }
  int64_t kvHeads() const { return kv_heads == 0 ? heads : kv_heads; }
};

enum class SampleOrder {
  kShuffled,    ///< a fresh permutation of all windows every epoch
  kSequential,  ///< sample j is tokens [j*seq_len, j*seq_len + seq_len + 1)
};

struct DataOptions {
  std::string train_path;  ///< token shard (.bin); required
  std::string val_path;    ///< optional validation shard; empty disables validation
  int64_t seq_len = 128;   ///< tokens per sample (the window holds seq_len + 1)
  SampleOrder order = SampleOrder::kShuffled;
};

struct TrainOptions {
  int64_t steps = 300;                ///< optimizer steps of the whole run
  int64_t global_batch = 16;          ///< sequences per optimizer step, over all ranks
  int64_t micro_batch = 16;           ///< sequences per forward/backward on one rank
  uint64_t seed = 1234;               ///< initialisation and sample order
  int64_t threads = 0;                ///< intra-op CPU threads; 0 = all cores
  std::string out_dir = "runs/tiny";  ///< metrics, checkpoints and final weights
  int64_t checkpoint_every = 100;     ///< steps between checkpoints; 0 = only at the end
  int64_t keep_checkpoints = 2;       ///< newest checkpoints kept on disk
  bool resume = true;                 ///< continue from out_dir's latest checkpoint if present
  int64_t val_every = 50;             ///< steps between validation passes; 0 = only at the end
  int64_t val_batches = 8;            ///< micro-batches per validation pass
  double grad_clip = 1.0;             ///< max global gradient norm; 0 disables clipping

  /// Sequences per forward/backward on one of `world_size` ranks: micro_batch,
  /// or the rank's whole share of the global batch when that is smaller.
  int64_t microBatchPerRank(int world_size) const {
    const int64_t per_rank = global_batch / world_size;
    return micro_batch < per_rank ? micro_batch : per_rank;
  }
};

/// Inner optimizer (AdamW) and its learning-rate schedule.
struct OptimizerOptions {
  double lr = 3e-3;           ///< peak learning rate
  double min_lr = 3e-4;       ///< floor of the cosine decay
  int64_t warmup_steps = 30;  ///< linear warmup from lr/warmup_steps to lr
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  ///< decoupled; applied to matrices (dim >= 2) only
};

/// The engine collectives run on (docs/distributed.md).
enum class CommBackend {
  kGloo,  ///< libtorch's c10d Gloo over TCP: the CPU default
  kMpi,   ///< the MPI library mpirun provides (builds with LOOM_WITH_MPI)
  kNccl,  ///< NCCL on GPUs (builds with LOOM_WITH_NCCL)
};

struct ParallelOptions {
  int64_t dp = -1;  ///< data-parallel ranks; -1 = the world size / tp
  CommBackend backend = CommBackend::kGloo;
  double bucket_mb = 1.0;  ///< MiB of gradients per reduction bucket
  bool zero1 = false;      ///< shard optimizer state over data-parallel ranks (ZeRO-1)
  double timeout_s = 600;  ///< seconds any collective may take before the job fails
  int64_t tp = 1;          ///< tensor-parallel ranks per group (consecutive ranks)
  bool sequence_parallel = true;         ///< tp > 1: token-sharded residual, reduce-scatter/all-gather ends
  int64_t token_split_min_tokens = 1024;  ///< tp > 1: split micro-batches this large in two halves; 0 = never

  /// Data-parallel groups that `world_size` ranks form, tp consecutive ranks each. A tp that
  /// does not divide the world (validation reports it) counts every rank as its own group.
  int64_t dataParallelSize(int world_size) const {
    return tp >= 1 && world_size % tp == 0 ? world_size / tp : world_size;
  }
};

/// How replicas agree when an outer optimizer runs (docs/outer.md).
enum class OuterAlgorithm {
  kNone,    ///< synchronous data parallelism: gradients all-reduced every step
  kDiLoCo,  ///< every sync_every steps, Nesterov SGD on the averaged pseudo-gradient
  kNoLoCo,  ///< no collective: pairwise averaging with a peer chosen from the step number
  kCo2,     ///< one-round-stale outer all-reduce overlapped with local steps; penalty and clip
};

/// How pseudo-gradients travel between replicas (optim/outer/codec.h).
enum class PseudoGradientCodec {
  kFp32,         ///< lossless
  kFp16,         ///< IEEE half, values clamped to +-65504
  kBf16,         ///< bfloat16, round to nearest even
  kUint8MinMax,  ///< 8 bits between the block's min and max (truncating, PCCL's MIN_MAX)
  kUint8Lut,     ///< 8 bits over +-3 sigma with a 256-entry table of bin means (prime/INTELLECT-1)
};

/// The outer optimizer. lr, momentum and consensus have per-algorithm defaults,
/// so their zero/negative sentinels mean "the algorithm's default" (effective*()).
/// runtime/config/validate.cpp checks the ranges; that replicas divides the world
/// size and group_size the replica count is checked by the trainer at start-up.
struct OuterOptions {
  OuterAlgorithm algorithm = OuterAlgorithm::kNone;
  int64_t sync_every = 50;  ///< H: inner steps between a replica's syncs
  double lr = 0;            ///< outer learning rate; 0 = DiLoCo 0.7, NoLoCo 0.7, CO2 1.0
  double momentum = -1;     ///< outer momentum; -1 = DiLoCo 0.9, NoLoCo 0.5, CO2 0
  bool nesterov = true;     ///< DiLoCo: PyTorch SGD(nesterov=True); false: heavy-ball
  PseudoGradientCodec codec = PseudoGradientCodec::kFp32;
  int64_t replicas = 0;          ///< model replicas; 0 = one per rank; ranks of a replica run sync DP inside it
  int64_t fragments = 1;         ///< streaming DiLoCo: P fragments, one synced every sync_every / P steps
  int64_t fragment_delay = 0;    ///< streaming DiLoCo: tau, steps a fragment's sync overlaps
  double fragment_alpha = 0;     ///< streaming DiLoCo: alpha, weight of local progress kept at a sync
  bool delayed = false;          ///< DiLoCo: apply each averaged pseudo-gradient one round late (async DiLoCo)
  int64_t group_size = 2;        ///< NoLoCo: replicas averaged together each sync
  double consensus = -1;         ///< NoLoCo: gamma, pull towards the group mean; -1 = effectiveLr()
  double staleness_penalty = 1;  ///< CO2: lambda, outer gradients divided by it
  double clip = 1;               ///< CO2: phi, outer momentum clamped to [-phi, phi]; 0 = no clip

  double effectiveLr() const {
    if (lr > 0) return lr;
    return algorithm == OuterAlgorithm::kCo2 ? 1.0 : 0.7;
  }
  double effectiveMomentum() const {
    if (momentum >= 0) return momentum;
    // CO2: fairseq-CO2 picks 0 up to 16 workers (0.2 to 32, 0.5 to 64, 0.6 beyond);
    // a stale outer step with momentum overshoots at small scale.
    if (algorithm == OuterAlgorithm::kCo2) return 0.0;
    return algorithm == OuterAlgorithm::kDiLoCo ? 0.9 : 0.5;
  }
  double effectiveConsensus() const { return consensus >= 0 ? consensus : effectiveLr(); }
};

enum class ElasticPolicy { kNone, kReplace, kShrink };

/// Elastic training (docs/elastic.md); elastic iff policy != kNone.
struct ElasticOptions {
  ElasticPolicy policy = ElasticPolicy::kNone;
  int64_t min_ranks = 1;              ///< below this the job stops after a durable checkpoint
  int64_t max_ranks = 0;              ///< joiners admitted up to this world size; 0 = the starting one
  double heartbeat_interval_s = 0.5;  ///< between a rank's heartbeats
  double heartbeat_timeout_s = 5;     ///< silence that declares a rank lost
  double rebuild_timeout_s = 30;      ///< survivors' wait for each other when rebuilding
  double poll_interval_s = 0.02;      ///< watchdog's period for failures and joiners
  double join_timeout_s = 0;          ///< REPLACE: recovery's wait for replacements; 0 = do not wait

  bool enabled() const { return policy != ElasticPolicy::kNone; }
};

struct LoggingOptions {
  int64_t log_every = 10;            ///< steps between JSON/progress lines (step 1 is always logged)
  LogLevel level = LogLevel::kInfo;  ///< debug | info | warning | error
  double peak_tflops = 0;            ///< per-rank peak for MFU; 0 = measure a GEMM at start-up
};

enum class ContextMode { kNone, kStatic, kHdp };

/// How sequences are laid out over ranks (docs/hdp.md); documents iff mode != kNone.
struct ContextOptions {
  ContextMode mode = ContextMode::kNone;
  int64_t cp = 0;                 ///< STATIC: group size; 0 = sized for max_tokens
  int64_t capacity = 4096;        ///< tokens a rank holds at once (C)
  int64_t tokens_per_step = 65536;
  double median_tokens = 1024;    ///< lognormal median of the document length
  double sigma = 1.5;             ///< lognormal sigma
  int64_t min_tokens = 16;
  int64_t max_tokens = 16384;

  bool documents() const { return mode != ContextMode::kNone; }
};

/// The whole job, as the layers consume it.
struct JobOptions {
  ModelOptions model;
  DataOptions data;
  TrainOptions train;
  OptimizerOptions optimizer;
  OuterOptions outer;
  ParallelOptions parallel;
  ElasticOptions elastic;
  ContextOptions context;
  LoggingOptions logging;
};

}  // namespace loom
