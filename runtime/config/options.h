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
  int64_t dp = -1;                        ///< data-parallel ranks; -1 = the whole world
  CommBackend backend = CommBackend::kGloo;
  double bucket_mb = 1.0;                 ///< MiB of gradients per reduction bucket
  bool zero1 = false;                     ///< shard optimizer state over data-parallel ranks (ZeRO-1)
  double timeout_s = 600;                 ///< seconds any collective may take before the job fails
};

struct ElasticOptions {};

struct LoggingOptions {
  int64_t log_every = 10;            ///< steps between JSON/progress lines (step 1 is always logged)
  LogLevel level = LogLevel::kInfo;  ///< debug | info | warning | error
  double peak_tflops = 0;            ///< per-rank peak for MFU; 0 = measure a GEMM at start-up
};

/// The whole job, as the layers consume it.
struct JobOptions {
  ModelOptions model;
  DataOptions data;
  TrainOptions train;
  OptimizerOptions optimizer;
  ParallelOptions parallel;
  ElasticOptions elastic;
  LoggingOptions logging;
};

}  // namespace loom
