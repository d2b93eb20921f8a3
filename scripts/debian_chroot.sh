# debian_chroot.sh - sourced, not run: a minimal Debian root in which loom is built
# and tested against another Debian release's libtorch, without touching /.
# Used by scripts/check_torch2_runtime.sh and scripts/check_gpu_build.sh.
#
# The caller defines die MESSAGE (prints and exits 2). Needs root. Functions:
#   chroot_init WORKDIR NAME                 checks for root, creates WORKDIR and sets WORK
#                                            (absolute), ROOT=WORK/NAME-root and
#                                            LOG=WORK/NAME-setup.log (emptied)
#   chroot_bootstrap SUITE MIRROR COMPONENTS   debootstrap once (marked by ROOT/.bootstrapped)
#   chroot_mount                             bind-mounts /proc /sys /dev /dev/pts and ROOT
#                                            onto itself; undone when the caller exits
#   in_root COMMAND...                       runs COMMAND in the root, clean environment
#   chroot_apt_install PACKAGE...            apt-get update + install, no recommends
#   chroot_checkout REPO                     REPO's HEAD, checked out at ROOT/work/loom
#   chroot_build_and_test NAME DIR COMMAND [CTEST_ARG...]
#                                            in that checkout: COMMAND (output in DIR/build.log),
#                                            then CTest on DIR; fails (1) when either does

chroot_init() {
  [[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot and bind mounts)"
  mkdir -p "$1" || die "cannot create $1"
  WORK="$(cd "$1" && pwd)"
  ROOT="$WORK/$2-root"
  LOG="$WORK/$2-setup.log"
  : >"$LOG"
}

chroot_bootstrap() {
  local suite="$1" mirror="$2" components="$3"
  if ! command -v debootstrap >/dev/null; then
    echo "== installing debootstrap into / (apt-get)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; } >>"$LOG" 2>&1 ||
      die "apt-get install debootstrap failed; see $LOG"
  fi
  if [[ ! -f "$ROOT/.bootstrapped" ]]; then
    echo "== debootstrap $suite ($components) into $ROOT"
    rm -rf "$ROOT"
    debootstrap --variant=minbase --components="$components" --include=ca-certificates \
      "$suite" "$ROOT" "$mirror" >>"$LOG" 2>&1 || die "debootstrap $suite failed; see $LOG"
    # Mirrors and snapshots may serve a Release file past its Valid-Until date.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99loom-no-valid-until"
    touch "$ROOT/.bootstrapped"
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null
}

_chroot_mounted=()
_chroot_unmount_all() {
  local i
  for ((i = ${#_chroot_mounted[@]} - 1; i >= 0; i--)); do umount -l "${_chroot_mounted[i]}" 2>/dev/null; done
}

chroot_mount() {
  trap _chroot_unmount_all EXIT
  # The root itself as a mount point, so that tests can remount / inside it
  # (ip netns exec runs `mount --make-rslave /`).
  if ! mountpoint -q "$ROOT"; then
    mount --bind "$ROOT" "$ROOT" || die "cannot bind-mount $ROOT onto itself"
    _chroot_mounted+=("$ROOT")
  fi
  local d
  for d in proc sys dev dev/pts; do
    mkdir -p "$ROOT/$d"
    if ! mountpoint -q "$ROOT/$d"; then
      mount --bind "/$d" "$ROOT/$d" || die "cannot bind-mount /$d into $ROOT"
      _chroot_mounted+=("$ROOT/$d")
    fi
  done
}

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

chroot_apt_install() {
  echo "== apt-get install in $ROOT: $# packages"
  in_root bash -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(printf '%q ' "$@")" \
    >>"$LOG" 2>&1 || die "apt-get install in $ROOT failed; see $LOG"
}

chroot_checkout() {
  local repo="$1" clone="$ROOT/work/loom"
  echo "== fetching HEAD ($(git -C "$repo" rev-parse --short HEAD)) into $clone"
  if [[ ! -d "$clone/.git" ]]; then
    git clone -q "$repo" "$clone" || die "git clone into $ROOT failed"
  fi
  # The clone is the script's own: local edits there are discarded (ignored build folders are kept).
  git -C "$clone" fetch -q "$repo" HEAD && git -C "$clone" checkout -q --force --detach FETCH_HEAD &&
    git -C "$clone" clean -fdq || die "cannot check out HEAD in $clone"
}

chroot_build_and_test() {
  local name="$1" dir="$2" command="$3" t0=$SECONDS extra="" rc
  shift 3
  echo "== build (log: $ROOT/work/loom/$dir/build.log)"
  in_root bash -c "cd /work/loom && mkdir -p $dir && $command > $dir/build.log 2>&1" ||
    { tail -n 40 "$ROOT/work/loom/$dir/build.log"; echo "$name: build failed"; return 1; }
  echo "== built in $((SECONDS - t0))s"
  echo "== ctest"
  t0=$SECONDS
  (($#)) && extra="$(printf '%q ' "$@")"
  in_root bash -c "cd /work/loom && ctest --test-dir $dir --output-on-failure -j $(nproc) --timeout 900 $extra"
  rc=$?
  echo "== ctest exit $rc after $((SECONDS - t0))s"
  ((rc == 0)) || return 1
}

# The packages of scripts/install_deps.sh (so that the lists cannot drift), one per line.
install_deps_packages() {
  sed -n '/^packages=(/,/^)/p' "$1/scripts/install_deps.sh" | sed '1d;$d' | tr ' ' '\n' | grep -v '^$'
}
