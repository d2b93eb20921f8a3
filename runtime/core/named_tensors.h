// Tensors under names, in order: parameters, optimizer state, checkpoint and
// snapshot contents. One alias for every layer that passes them around.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace loom {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

}  // namespace loom
