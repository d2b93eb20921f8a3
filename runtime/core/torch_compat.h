// Where loom's code differs between libtorch 1.13 (Debian) and 2.x (PyTorch
// wheels). Everything else compiles unchanged against both; when a new
// difference appears, hide it here rather than sprinkling version checks. The
// exception: runtime/dist/gloo_group.cpp picks c10d's AsyncWork constructor by
// compile-time detection, as it changed in several 2.x releases.
#pragma once

#include <torch/version.h>

#define LOOM_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

/// at::scaled_dot_product_attention (fused/flash attention) exists from 2.0; 1.13
/// takes the explicit softmax(QK^T)V path.
#define LOOM_TORCH_HAS_SDPA LOOM_TORCH_VERSION_AT_LEAST(2, 0)
