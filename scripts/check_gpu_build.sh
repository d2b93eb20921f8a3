#!/usr/bin/env bash
# check_gpu_build.sh - run scripts/gpu_check.sh against a CUDA libtorch 2.x on a
# machine without a GPU: every GPU target must configure, compile (nvcc and the
# CUDA torch headers), link against libtorch_cuda, start, and skip for want of a GPU.
#
# Why: the GPU machine's only build of loom is gpu_check.sh against its CUDA PyTorch,
#   in a few scarce minutes. This machine's libtorch is 1.13 for CPU, so without this
#   check the CUDA-torch sources (the torch ops on CUDA tensors, the training step
#   and tensor-parallel tests on CUDA, gpu_train_bench) and gpu_check.sh's own
#   configure path are first compiled and linked there.
#
# What it does: debootstraps Debian trixie (main, contrib, non-free) into
#   WORKDIR/trixie-cuda-root and installs there libtorch-cuda-dev and python3-torch-cuda
#   (PyTorch 2.6 built for CUDA 12), libgloo-cuda-dev (the Gloo that libtorch uses),
#   nvidia-cuda-toolkit (nvcc 12.4), libcuda1 (the driver's user-space library: with
#   no kernel module no GPU is found) and gpu_check.sh's build dependencies; puts NCCL
#   2.28 ($NCCL_HOME, else /usr/local/cuda) at /opt/nccl in the root; clones HEAD; runs
#   gpu_check.sh there with a budget for this machine's cores. Nothing is installed
#   into / except debootstrap.
#
# cuDNN: Debian ships it only as a script that downloads it from NVIDIA at install
#   time, which cannot be reached from here. A stand-in package satisfies the
#   dependency, and a stand-in libcudnn.so.9 defines the versioned cudnn* symbols that
#   libtorch references, each aborting with a message if called. loom calls no cuDNN,
#   and without a GPU PyTorch never reaches it; the GPU machine has the real library.
#
# Needs: root, deb.debian.org. Cost: about 9 GB in WORKDIR; first run about 5 min of
#   setup, then the build (about 25 min on 2 cores; later runs rebuild only changes).
#
# Usage: scripts/check_gpu_build.sh [--suite] [WORKDIR]   (default: <repo>/build-torch2)
#   --suite              then also build everything in gpu_check.sh's configuration (CUDA
#                        libtorch, NCCL on, MPI off) and run the whole CTest suite there, as a
#                        user of a GPU machine would (about 8 more minutes of build and 20 of
#                        tests on 2 cores)
#   LOOM_CHROOT_MIRROR   default http://deb.debian.org/debian
# Exit: 0 gpu_check.sh built every GPU target and found no GPU (its exit 3) [and every
#   test passed or skipped], 1 a step failed (its output says which), 2 setup failed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
suite=no
if [[ "${1:-}" == "--suite" ]]; then suite=yes; shift; fi
WORK="${1:-$REPO/build-torch2}"
MIRROR="${LOOM_CHROOT_MIRROR:-http://deb.debian.org/debian}"

die() { echo "check_gpu_build: setup failed: $*" >&2; exit 2; }
# shellcheck source=scripts/debian_chroot.sh
source "$REPO/scripts/debian_chroot.sh"

chroot_init "$WORK" trixie-cuda

nccl_home="${NCCL_HOME:-/usr/local/cuda}"
[[ -d "$nccl_home/include/nccl_device" ]] ||
  die "no NCCL with the device API (nccl_device/) in $nccl_home: set NCCL_HOME to an NCCL 2.28 install"

chroot_bootstrap trixie "$MIRROR" main,contrib,non-free
chroot_mount

# The stand-in for Debian's cuDNN download script (see the header).
if ! in_root dpkg-query -W nvidia-cudnn >/dev/null 2>&1; then
  echo "== installing the cuDNN stand-in package"
  in_root bash -c 'set -e; d=$(mktemp -d); mkdir "$d/DEBIAN"
    printf "%s\n" "Package: nvidia-cudnn" "Version: 9.99.0~loom.stand.in" "Architecture: all" \
      "Maintainer: loom <loom@localhost>" \
      "Description: stand-in for the cuDNN download script (scripts/check_gpu_build.sh)" >"$d/DEBIAN/control"
    dpkg-deb --build "$d" /tmp/nvidia-cudnn-stand-in.deb >/dev/null && dpkg -i /tmp/nvidia-cudnn-stand-in.deb' \
    >>"$LOG" 2>&1 || die "cannot install the cuDNN stand-in package; see $LOG"
fi

chroot_apt_install build-essential cmake ninja-build ccache git pkg-config \
  libprotobuf-dev protobuf-compiler nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev \
  libbenchmark-dev python3-dev iproute2 procps \
  libtorch-cuda-dev python3-torch-cuda libgloo-cuda-dev nvidia-cuda-toolkit libcuda1

stub=/usr/local/lib/libcudnn.so.9
if [[ ! -f "$ROOT$stub" ]]; then
  echo "== building the cuDNN stand-in library $stub"
  in_root bash -c 'set -e; lib=/usr/lib/x86_64-linux-gnu
    syms=$(nm -D --undefined-only $lib/libtorch_cuda.so.* $lib/libtorch_python.so.* |
      awk "\$1 == \"U\" && \$2 ~ /^cudnn/ { sub(/@.*/, \"\", \$2); print \$2 }" | sort -u)
    [ -n "$syms" ]
    { echo "#include <stdio.h>"; echo "#include <stdlib.h>"
      for s in $syms; do
        echo "void $s(void) { fputs(\"cuDNN stand-in: $s called (scripts/check_gpu_build.sh)\\n\", stderr); abort(); }"
      done; } >/tmp/cudnn_stand_in.c
    { echo "libcudnn.so.9 { global:"; for s in $syms; do echo "  $s;"; done; echo "local: *; };"; } >/tmp/cudnn.map
    gcc -shared -fPIC -o '"$stub"' -Wl,-soname,libcudnn.so.9 -Wl,--version-script=/tmp/cudnn.map /tmp/cudnn_stand_in.c
    ldconfig' >>"$LOG" 2>&1 || die "cannot build the cuDNN stand-in library; see $LOG"
fi

echo "== NCCL from $nccl_home into /opt/nccl"
rm -rf "$ROOT/opt/nccl" && mkdir -p "$ROOT/opt/nccl/include" "$ROOT/opt/nccl/lib" &&
  cp -a "$nccl_home"/include/nccl*.h "$nccl_home/include/nccl_device" "$ROOT/opt/nccl/include/" &&
  cp -a "$(dirname "$(readlink -f "$(ls "$nccl_home"/lib*/libnccl.so.2 | head -1)")")"/libnccl.so* "$ROOT/opt/nccl/lib/" ||
  die "cannot copy NCCL from $nccl_home"

echo "== versions"
in_root bash -c "nvcc --version | tail -1; g++ --version | head -1; cmake --version | head -1; \
  python3 -c 'import torch; print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda)'; \
  sed -n 's/^#define NCCL_VERSION_CODE /NCCL /p' /opt/nccl/include/nccl.h" || die "the root's toolchain does not run"

chroot_checkout "$REPO"

echo "== scripts/gpu_check.sh in the root (all output follows)"
in_root bash -c "cd /work/loom && NCCL_HOME=/opt/nccl LOOM_GPU_CHECK_BUDGET_S=7200 \
  LOOM_GPU_CHECK_BUILD_S=7000 LOOM_GPU_CHECK_JOBS=$(nproc) scripts/gpu_check.sh build-gpu"
rc=$?
case $rc in
  3) echo "check_gpu_build: every GPU target built against the CUDA libtorch and skipped without a GPU" ;;
  0) echo "check_gpu_build: gpu_check.sh found a GPU in the root and passed" ;;
  *) echo "check_gpu_build: gpu_check.sh exited $rc"; exit 1 ;;
esac
[[ $suite == yes ]] || exit 0

echo "== the whole suite in build-gpu"
chroot_build_and_test check_gpu_build build-gpu "ninja -C build-gpu -j $(nproc)" || exit 1
