#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds loom,
# prepares the Brown corpus and trains configs/tiny.pbtxt on two data-parallel ranks
# started by loom-launch (a few minutes on 2 cores).
# Idempotent: a second run reuses the build and the data, and resumes the run from its
# last checkpoint (a finished run just re-exports its weights). Extra arguments go to
# loom-train, e.g. --set train.steps=600.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
./scripts/build.sh
./scripts/prepare_data.sh build
exec ./build/bin/loom-launch --nproc-per-node 2 -- ./build/bin/loom-train --config configs/tiny.pbtxt "$@"
