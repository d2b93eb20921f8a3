// Deterministic initialisation from the seed (docs/model.md):
//   norm gains                    = 1
//   attn.wo.weight, mlp.w2.weight ~ N(0, (init_std / sqrt(2 * layers))^2)   (residual projections)
//   every other weight            ~ N(0, init_std^2)
// drawn in parameter registration order from `generator` (the trainer's CPU
// generator, seeded with train.seed), so equal seeds give equal weights.
#pragma once

#include "model/llama.h"

#include <ATen/core/Generator.h>

namespace loom::model {

void initializeParameters(LlamaImpl& model, at::Generator& generator);

}  // namespace loom::model
