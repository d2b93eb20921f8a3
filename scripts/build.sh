#!/usr/bin/env bash
# Configures (once) and builds loom into ./build (or $LOOM_BUILD_DIR). Idempotent:
# a second run only rebuilds what changed. Extra arguments go to the CMake configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${LOOM_BUILD_DIR:-build}"
jobs="${LOOM_BUILD_JOBS:-$(nproc)}"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build "$build_dir" -j "$jobs"
