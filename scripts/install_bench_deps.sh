#!/usr/bin/env bash
# Installs what the benchmark harnesses need beyond scripts/install_deps.sh: matplotlib for
# /usr/bin/python3 (the plots of benchmarks/wan/wan_bench.py) and iproute2 (ip, tc: its
# emulated WAN). Idempotent: only missing packages are fetched.
set -euo pipefail

packages=(python3-matplotlib iproute2)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_bench_deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install_bench_deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
