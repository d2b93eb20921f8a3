// Fault injection for chaos tests of elastic training (docs/elastic.md "Chaos
// tests"): LOOM_FAULT_INJECT names the worker, step and phase at which a worker
// sends itself a signal, so a test can kill a rank at a precise point of a
// step (a SIGKILL from outside cannot aim at "during the gradient all-reduce").
//
//   LOOM_FAULT_INJECT="<id>:<step>:<phase>:<signal>[;...]"
//     id      the worker's stable elastic id (its rank unless replaced)
//     step    the step being computed (1-based, as in the metrics)
//     phase   forward   before the step's first forward
//             allreduce after the last backward, with gradient buckets in flight
//             commit    after the commit vote, before the optimizer step
//             snapshot  while the committed step's snapshot is replicated
//             outer     after the optimizer step, before the outer optimizer's
//                       turn (on a sync step: while the other replicas exchange)
//     signal  KILL or STOP
// Each entry fires once, the first time its worker reaches it. Unset (the
// default): nothing fires, at the cost of one comparison per phase.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom::train {

enum class FaultPhase { kForward, kAllReduce, kCommit, kSnapshot, kOuter };

class FaultInjector {
 public:
  /// Parses `spec` (the variable's value; empty: no faults). Throws InputError
  /// naming LOOM_FAULT_INJECT and the bad entry.
  FaultInjector(const std::string& spec, int id);
  /// From the environment.
  static FaultInjector fromEnvironment(int id);

  /// Sends this process the entry's signal when (id, step, phase) matches one.
  void at(FaultPhase phase, int64_t step);

 private:
  struct Fault {
    int id;
    int64_t step;
    FaultPhase phase;
    int signal;
    bool fired = false;
  };
  std::vector<Fault> faults_;
  int id_;
};

}  // namespace loom::train
