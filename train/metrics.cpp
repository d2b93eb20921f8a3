#include "train/metrics.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace loom::train {

std::string toJsonLine(const StepMetrics& m) {
  nlohmann::ordered_json j;
  j["step"] = m.step;
  j["loss"] = m.loss;
  j["lr"] = m.lr;
  j["grad_norm"] = m.grad_norm;
  j["tokens"] = m.tokens;
  j["tokens_per_s"] = m.tokens_per_s;
  j["step_ms"] = m.step_ms;
  j["comm_ms"] = m.comm_ms;
  j["exposed_comm_ms"] = m.exposed_comm_ms;
  j["mfu"] = m.mfu;
  j["world"] = m.world;
  j["layout"] = m.layout;
  j["bytes_tx"] = m.bytes_tx;
  j["bytes_rx"] = m.bytes_rx;
  j["time"] = m.time;
  if (m.elastic) {
    j["generation"] = m.elastic->generation;
    j["samples"] = m.elastic->samples;
    j["sample_sum"] = m.elastic->sample_sum;
    j["snapshot_ms"] = m.elastic->snapshot_ms;
  }
  if (m.tp) {
    j["tp_comm_ms"] = m.tp->comm_ms;
    j["tp_exposed_ms"] = m.tp->exposed_ms;
    j["tp_exposed_forward_ms"] = m.tp->exposed_forward_ms;
  }
  if (m.val_loss) {
    j["val_loss"] = *m.val_loss;
  }
  return j.dump();
}

double unixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string progressLine(const StepMetrics& m) {
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer),
                "step %5lld/%lld | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s | mfu %.1f%%",
                static_cast<long long>(m.step), static_cast<long long>(m.total_steps), m.loss, m.lr, m.grad_norm,
                m.step_ms, m.tokens_per_s, 100.0 * m.mfu);
  std::string line = buffer;
  if (m.val_loss) {
    std::snprintf(buffer, sizeof(buffer), " | val %.4f", *m.val_loss);
    line += buffer;
  }
  return line;
}

double measurePeakFlops() {
  constexpr int64_t kN = 512;
  constexpr int kRepeats = 8;
  const at::Tensor a = at::randn({kN, kN});
  const at::Tensor b = at::randn({kN, kN});
  at::Tensor c = at::empty({kN, kN});
  at::mm_out(c, a, b);  // warm-up: thread pool and BLAS buffers
  double best_s = 1e30;
  for (int i = 0; i < kRepeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    at::mm_out(c, a, b);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    best_s = std::min(best_s, elapsed.count());
  }
  return 2.0 * static_cast<double>(kN * kN * kN) / best_s;
}

}  // namespace loom::train
