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

[[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot and bind mounts)"
mkdir -p "$WORK" || die "cannot create $WORK"
WORK="$(cd "$WORK" && pwd)"
ROOT="$WORK/$SUITE-root"
LOG="$WORK/$SUITE-runtime.log"

if ! command -v debootstrap >/dev/null; then
  echo "== installing debootstrap into / (apt-get)"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; } >"$LOG" 2>&1 ||
    die "apt-get install debootstrap failed; see $LOG"
fi

if [[ ! -f "$ROOT/.bootstrapped" ]]; then
  echo "== debootstrap $SUITE into $ROOT"
  rm -rf "$ROOT"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" "$MIRROR" >"$LOG" 2>&1 ||
    die "debootstrap $SUITE failed; see $LOG"
  # Mirrors and snapshots may serve a Release file past its Valid-Until date.
  echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99loom-no-valid-until"
  touch "$ROOT/.bootstrapped"
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null; done
}
trap unmount_all EXIT
# The root itself as a mount point, so that tests can remount / inside it
# (ip netns exec runs `mount --make-rslave /`).
if ! mountpoint -q "$ROOT"; then
  mount --bind "$ROOT" "$ROOT" || die "cannot bind-mount $ROOT onto itself"
  mounted+=("$ROOT")
fi
for d in proc sys dev dev/pts; do
  mkdir -p "$ROOT/$d"
  if ! mountpoint -q "$ROOT/$d"; then
    mount --bind "/$d" "$ROOT/$d" || die "cannot bind-mount /$d into $ROOT"
    mounted+=("$ROOT/$d")
  fi
done
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# The packages of scripts/install_deps.sh, read from it so the two lists cannot drift;
# clang's runtime is versioned there, so clang comes without it (its tests skip).
mapfile -t packages < <(sed -n '/^packages=(/,/^)/p' "$REPO/scripts/install_deps.sh" |
  sed '1d;$d' | tr ' ' '\n' | grep -v '^libclang-rt-' | grep -v '^$')
((${#packages[@]} > 10)) || die "could not read the package list from scripts/install_deps.sh"
packages+=("$CXX_PKG" python3-dev)
echo "== apt-get install in $SUITE: ${#packages[@]} packages"
in_root bash -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(printf '%q ' "${packages[@]}")" \
  >>"$LOG" 2>&1 || die "apt-get install in the $SUITE root failed; see $LOG"

echo "== versions"
in_root bash -c "$CXX_PKG --version | head -1; cmake --version | head -1; \
  python3 -c 'import torch; print(\"torch\", torch.__version__)'; \
  dpkg-query -W -f='\${Package} \${Version}\n' libtorch-dev libprotobuf-dev libopenmpi-dev libgtest-dev"

echo "== fetching HEAD ($(git -C "$REPO" rev-parse --short HEAD)) into $ROOT/work/loom"
if [[ ! -d "$ROOT/work/loom/.git" ]]; then
  git clone -q "$REPO" "$ROOT/work/loom" || die "git clone into $ROOT failed"
fi
# The clone is this script's own: local edits there are discarded (the build folder is ignored, so kept).
git -C "$ROOT/work/loom" fetch -q "$REPO" HEAD && git -C "$ROOT/work/loom" checkout -q --force --detach FETCH_HEAD &&
  git -C "$ROOT/work/loom" clean -fdq ||
  die "cannot check out HEAD in $ROOT/work/loom"

echo "== build (log: $ROOT/work/loom/build/build.log)"
t0=$SECONDS
in_root bash -c "cd /work/loom && mkdir -p build && \
  CC=$CC_CMD CXX=$CXX_PKG LOOM_BUILD_JOBS=$(nproc) ./scripts/build.sh > build/build.log 2>&1" ||
  { tail -n 40 "$ROOT/work/loom/build/build.log"; echo "check_torch2_runtime: build failed"; exit 1; }
echo "== built in $((SECONDS - t0))s"

echo "== ctest"
t0=$SECONDS
extra=""
((${#ctest_args[@]})) && extra="$(printf '%q ' "${ctest_args[@]}")"
in_root bash -c "cd /work/loom && ctest --test-dir build --output-on-failure -j $(nproc) --timeout 900 $extra"
rc=$?
echo "== ctest exit $rc after $((SECONDS - t0))s"
((rc == 0)) || exit 1
