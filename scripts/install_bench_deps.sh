#!/usr/bin/env bash
# Installs what the benchmark harnesses need beyond scripts/install_deps.sh: matplotlib for
# /usr/bin/python3 (the plots of benchmarks/wan/wan_bench.py) and iproute2 (ip, tc: its
# emulated WAN). Idempotent: only missing packages are fetched.
set -euo pipefail

packages=(python3-matplotlib iproute2)

source "$(dirname "${BASH_SOURCE[0]}")/apt_install_missing.sh"
apt_install_missing install_bench_deps "${packages[@]}"
