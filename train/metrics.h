// What a training step reports: one JSON object per logged step (machine
// readable, stable keys: ARCHITECTURE.md §4) and one short human progress line.
//
// MFU = trainingFlopsPerToken * tokens_per_s / (world * peak_flops_per_rank),
// with trainingFlopsPerToken = 6 * (N - N_embedding) + 12 * layers * heads * head_dim * seq_len
// (model/llama.h) and the per-rank peak either configured (logging.peak_tflops)
// or measured at start-up as the best float32 GEMM rate (measurePeakFlops).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loom::train {

struct StepMetrics {
  int64_t step = 0;  ///< 1-based number of optimizer steps done
  int64_t total_steps = 0;
  double loss = 0;  ///< mean token cross-entropy of this step's global batch
  double lr = 0;
  double grad_norm = 0;     ///< global norm before clipping
  int64_t tokens = 0;       ///< tokens trained on so far, over all ranks
  double tokens_per_s = 0;  ///< this step's global batch tokens / step time
  double step_ms = 0;
  double comm_ms = 0;          ///< time collectives were in flight
  double exposed_comm_ms = 0;  ///< time the step waited on collectives
  double mfu = 0;              ///< fraction in [0, 1]
  int world = 1;
  std::string layout;    ///< e.g. "dp=1"
  int64_t bytes_tx = 0;  ///< bytes this rank sent so far
  int64_t bytes_rx = 0;
  std::optional<double> val_loss;  ///< present on steps that ran validation
  double time = 0;                 ///< when the step committed, seconds since the Unix epoch
  /// Elastic jobs (docs/elastic.md): what the commit vote counted.
  struct Elastic {
    int64_t generation = 0;   ///< membership generation the step committed in
    int64_t samples = 0;      ///< global samples computed, over all ranks
    double sample_sum = 0;    ///< the sum of their global sample ids
    double snapshot_ms = 0;   ///< this rank's snapshot capture on the training thread
  };
  std::optional<Elastic> elastic;
  /// Tensor-parallel jobs (docs/tensor_parallel.md; included in comm_ms and
  /// exposed_comm_ms): the time their stream ran, the time compute waited for
  /// them, and of that the forward passes' part.
  struct TensorParallel {
    double comm_ms = 0;
    double exposed_ms = 0;
    double exposed_forward_ms = 0;
  };
  std::optional<TensorParallel> tp;
};

/// Seconds since the Unix epoch (wall clock, for lining up events across processes).
double unixSeconds();

/// One line of JSON (no trailing newline).
std::string toJsonLine(const StepMetrics& m);

/// "step   10/300 | loss 4.1234 | lr 3.00e-03 | norm 1.234 | 123.4 ms | 16600 tok/s | mfu 35.1%"
std::string progressLine(const StepMetrics& m);

/// Best float32 GEMM throughput of this process with the current intra-op
/// thread count, in FLOP/s (a few 512^3 matmuls; ~0.2 s).
double measurePeakFlops();

}  // namespace loom::train
