#!/usr/bin/env bash
# check_torch2_runtime.sh - build loom against Debian's newest libtorch 2.x and run every test.
#
# What it does: debootstraps a minimal Debian root (sid by default) into
#   WORKDIR/<suite>-root, installs into it the packages scripts/install_deps.sh
#   names (that suite's versions: libtorch-dev and python3-torch 2.14 in sid at
#   time of writing, protobuf, Open MPI, GoogleTest, ...) plus g++-14, clones
#   this repository's HEAD into it, builds with g++-14 and runs CTest with the
#   README test command's flags, inside the chroot.
#
# Why: the GPU machine builds loom against PyTorch 2.x, this Debian 12 machine
#   has libtorch 1.13. scripts/check_torch2_headers.sh compiles every source
#   against 2.x headers but links and runs nothing; this links against 2.x's
#   libtorch (with its Gloo and TCPStore) and runs the multi-process Gloo, MPI,
#   launcher, autograd and Python-extension tests against it.
#
# Why g++-14: sid's libtorch is built by a newer GCC and references
#   __cxa_call_terminate@CXXABI_1.3.15, which only libstdc++ from GCC 14 on has;
#   g++-13 cannot link it. (The GPU machine's pip wheel is built by an old
#   manylinux GCC and links with its GCC 13.)
#
# Needs: root (debootstrap, chroot, bind mounts of /proc, /sys, /dev) and
#   deb.debian.org. Only debootstrap itself is installed into / (apt-get) when
#   missing; everything else goes into WORKDIR. Mounts are undone on exit.
# Cost: about 3 GB in WORKDIR; on 2 cores about 3 min setup, 20 min build,
#   10 min tests. A second run reuses the root and the build (only HEAD is
#   re-fetched and rebuilt).
#
# Usage: scripts/check_torch2_runtime.sh [WORKDIR] [-- CTEST ARGS...]
#   WORKDIR defaults to <repo>/build-torch2.
#   LOOM_CHROOT_SUITE   Debian suite, default sid (trixie has libtorch 2.6)
#   LOOM_CHROOT_MIRROR  default http://deb.debian.org/debian
#   LOOM_CHROOT_CXX     compiler package and command, default g++-14
# Exit: 0 built and every test passed, 1 build or a test failed, 2 setup failed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$REPO/build-torch2"
if [[ $# -gt 0 && "$1" != "--" ]]; then WORK="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift
ctest_args=("$@")
SUITE="${LOOM_CHROOT_SUITE:-sid}"
MIRROR="${LOOM_CHROOT_MIRROR:-http://deb.debian.org/debian}"
CXX_PKG="${LOOM_CHROOT_CXX:-g++-14}"
CC_CMD="${CXX_PKG/g++/gcc}"

die() { echo "check_torch2_runtime: setup failed: $*" >&2; exit 2; }
# shellcheck source=scripts/debian_chroot.sh
source "$REPO/scripts/debian_chroot.sh"

chroot_init "$WORK" "$SUITE"

chroot_bootstrap "$SUITE" "$MIRROR" main
chroot_mount

# clang's runtime is versioned in install_deps.sh, so clang comes without it (its tests skip).
mapfile -t packages < <(install_deps_packages "$REPO" | grep -v '^libclang-rt-')
((${#packages[@]} > 10)) || die "could not read the package list from scripts/install_deps.sh"
chroot_apt_install "${packages[@]}" "$CXX_PKG" python3-dev

echo "== versions"
in_root bash -c "$CXX_PKG --version | head -1; cmake --version | head -1; \
  python3 -c 'import torch; print(\"torch\", torch.__version__)'; \
  dpkg-query -W -f='\${Package} \${Version}\n' libtorch-dev libprotobuf-dev libopenmpi-dev libgtest-dev"

chroot_checkout "$REPO"

chroot_build_and_test check_torch2_runtime build \
  "CC=$CC_CMD CXX=$CXX_PKG LOOM_BUILD_JOBS=$(nproc) ./scripts/build.sh" "${ctest_args[@]}" || exit 1
