#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs and a GPU machine cannot fetch, into
# .gpu-deps/ (git-ignored): run it on this Debian 12 machine, then hand the
# folder to the GPU machine with the working tree (the device tool's `carry`).
#
#   .gpu-deps/*.deb            the Debian packages loom's CMake needs besides
#                              libtorch, Gloo and CUDA: protobuf (headers,
#                              libraries, protoc), nlohmann-json, CLI11,
#                              GoogleTest/GoogleMock. gpu_check.sh unpacks them
#                              into its build folder (never into /) when the
#                              machine lacks them.
#   .gpu-deps/nccl/include     NCCL's headers with the device API (nccl_device/),
#                              from $NCCL_HOME or /usr/local/cuda, for a machine
#                              whose NCCL (a PyTorch wheel's) ships without them;
#                              used only against a library of the same version.
#
# About 4.5 MB. Usage: scripts/fetch_gpu_deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-deps
packages=(libprotobuf-dev libprotobuf32 libprotobuf-lite32 protobuf-compiler libprotoc32
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev)

rm -rf "$out"
mkdir -p "$out/nccl/include"
# apt-get download writes into the current folder; refresh the lists once if
# they are missing or stale.
if ! (cd "$out" && apt-get download "${packages[@]}" >/dev/null 2>&1); then
  apt-get update -qq
  (cd "$out" && apt-get download "${packages[@]}" >/dev/null)
fi

nccl_include="${NCCL_HOME:+$NCCL_HOME/include}"
nccl_include="${nccl_include:-/usr/local/cuda/include}"
if [ -f "$nccl_include/nccl.h" ] && [ -d "$nccl_include/nccl_device" ]; then
  cp -r "$nccl_include/nccl.h" "$nccl_include/nccl_device.h" "$nccl_include/nccl_device" "$out/nccl/include/"
  echo "fetch_gpu_deps: NCCL headers $(sed -n 's/^#define NCCL_VERSION_CODE \([0-9]*\).*/\1/p' "$nccl_include/nccl.h")" \
    "from $nccl_include"
else
  echo "fetch_gpu_deps: no NCCL with nccl_device/ in $nccl_include (set NCCL_HOME); packing none"
  rmdir "$out/nccl/include" "$out/nccl"
fi
ls "$out"/*.deb | sed 's|^|fetch_gpu_deps: |'
echo "fetch_gpu_deps: $(du -sh "$out" | cut -f1) in $out; carry it to the GPU machine with the working tree"
