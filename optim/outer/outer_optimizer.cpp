#include "optim/outer/outer_optimizer.h"

#include "optim/outer/diloco.h"
#include "optim/outer/noloco.h"
#include "runtime/core/error.h"

namespace loom::optim::outer {

std::unique_ptr<OuterOptimizer> makeOuterOptimizer(NamedTensors params, const OuterComms& comms,
                                                   const OuterOptions& opts, uint64_t seed,
                                                   const std::vector<int64_t>& fragment_sizes) {
  switch (opts.algorithm) {
    case OuterAlgorithm::kDiLoCo:
      return std::make_unique<DiLoCo>(std::move(params), comms, opts, fragment_sizes);
    case OuterAlgorithm::kCo2: {
      OuterOptions co2 = opts;
      co2.delayed = true;  // CO2 is the delayed schedule with its own rule
      return std::make_unique<DiLoCo>(std::move(params), comms, co2);
    }
    case OuterAlgorithm::kNoLoCo:
      return std::make_unique<NoLoCo>(std::move(params), comms, opts, seed);
    case OuterAlgorithm::kNone:
      break;
  }
  LOOM_THROW(InputError, "makeOuterOptimizer: outer.algorithm is NONE; synchronous data parallelism needs no ",
             "outer optimizer");
}

std::unique_ptr<OuterOptimizer> makeOuterOptimizer(NamedTensors params, dist::Communicator& comm,
                                                   const OuterOptions& opts, uint64_t seed) {
  return makeOuterOptimizer(std::move(params), OuterComms{&comm, nullptr}, opts, seed);
}

}  // namespace loom::optim::outer
