// Sending a rank's named tensors to ranks that know nothing about them (a
// joiner receiving the training state): names, dtypes, shapes, then values.
#pragma once

#include "runtime/core/named_tensors.h"
#include "runtime/dist/communicator.h"

namespace loom::elastic {

/// Collective over `comm`: every rank returns `root`'s tensors (the root its
/// own, uncopied; the others fresh CPU tensors). Only the root's `tensors` are read.
NamedTensors broadcastNamedTensors(dist::Communicator& comm, const NamedTensors& tensors, int root);

}  // namespace loom::elastic
