#!/usr/bin/env bash
# Installs the Debian 12 packages loom builds and tests with. Idempotent: only
# missing packages are fetched, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libgloo-dev libopenblas0-pthread
  libprotobuf-dev protobuf-compiler
  libopenmpi-dev openmpi-bin
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  python3-torch
  clang libclang-rt-14-dev
  iproute2 procps
)
# npm may come from NodeSource rather than Debian; install Debian's only when none exists.
command -v npm >/dev/null 2>&1 || packages+=(npm)

source "$(dirname "${BASH_SOURCE[0]}")/apt_install_missing.sh"
apt_install_missing install_deps "${packages[@]}"
