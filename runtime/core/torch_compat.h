// Where loom's code differs between libtorch 1.13 (Debian) and 2.x (PyTorch
// wheels). Everything else compiles unchanged against both; when a new
// difference appears, hide it here rather than sprinkling version checks. Two
// adaptations live next to their single use, by compile-time detection rather
// than version numbers: c10d's AsyncWork constructor (runtime/dist/gloo_group.cpp)
// and grad_accumulator()'s pointer type (parallel/gradient_reducer.cpp).
// scripts/check_torch2_headers.sh compiles everything against 2.6 and 2.14.
#pragma once

#include <torch/version.h>

#define LOOM_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

/// at::scaled_dot_product_attention (fused/flash attention) exists from 2.0; 1.13
/// takes the explicit softmax(QK^T)V path.
#define LOOM_TORCH_HAS_SDPA LOOM_TORCH_VERSION_AT_LEAST(2, 0)
