// Graceful stop on SIGINT/SIGTERM: the trainer finishes the current step,
// checkpoints and exits 0 (a second signal does the same; it never kills a
// step half-way, so state on disk stays consistent).
//
// Signal handlers can only reach process-wide state, so the flag is one
// lock-free atomic owned by this file; StopSignal is the only way to reach it.
#pragma once

namespace loom::train {

class StopSignal {
 public:
  /// Installs the handlers for SIGINT and SIGTERM (restores the previous ones on destruction).
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  /// True once a signal arrived; returns the signal number through `signal` when non-null.
  bool requested(int* signal = nullptr) const;
};

}  // namespace loom::train
