#!/usr/bin/env bash
# Installs what is missing, builds loom with its tests and runs every test (CTest:
# C++ unit and integration tests, multi-process CLI tests, the Python extension tests).
# Idempotent. CI runs exactly this script (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
./scripts/build.sh
ctest --test-dir "${LOOM_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" --timeout 900
