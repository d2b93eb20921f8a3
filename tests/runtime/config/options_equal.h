// Field-by-field comparison of JobOptions for the config tests, written out by
// hand (not through the proto conversion it is meant to check).
#pragma once

#include "runtime/config/options.h"

namespace loom::test {

/// Adds a GoogleTest failure naming each field where `actual` differs from
/// `expected`; doubles must match exactly (the config round-trips bit for bit).
void expectSameOptions(const JobOptions& expected, const JobOptions& actual);

/// Every field differs from JobOptions{} except outer.delayed, which cannot be
/// combined with streaming DiLoCo's outer.fragments; valid for a world of 2
/// ranks (parallel.dp = 2).
JobOptions nonDefaultOptions();

/// nonDefaultOptions() with outer.delayed = true, so outer.fragments is back at 1;
/// valid for a world of 2 ranks.
JobOptions nonDefaultDelayedOptions();

}  // namespace loom::test
