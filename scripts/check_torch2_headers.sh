#!/usr/bin/env bash
# check_torch2_headers.sh - syntax-check every loom source against PyTorch 2.x headers.
#
# What it checks:
#   Every .cpp in build/compile_commands.json, plus four CUDA-libtorch-only
#   sources that a CPU-only configure leaves out of the database
#   (tests/parallel/fused_norm_torch_cuda_test.cpp, tests/model/llama_cuda_test.cpp,
#   tests/model/tensor_parallel_cuda_test.cpp, benchmarks/gpu_train_bench.cpp;
#   they borrow tests/model/llama_test.cpp's flags), is compiled with
#   -fsyntax-only and the project's own flags (-Wall -Wextra -Werror), with the
#   system libtorch 1.13 include dirs swapped for newer ones and every
#   -DLOOM_*_TORCH_CUDA=0 flipped to =1. Two passes:
#     1. Debian trixie libtorch-dev 2.6 headers, system g++ (12), -std=c++17
#     2. Debian sid libtorch-dev 2.x (2.14 at time of writing) headers,
#        trixie's g++-14 (run from an unpacked folder), -std=c++20
#        (those headers need C++20).
#
# Why: the GPU machine builds loom against PyTorch 2.x (pip wheel), while this
#   Debian 12 box only has libtorch 1.13. API breaks between 1.13 and 2.x
#   otherwise only show up on the (scarce) GPU machine.
#
# What it does NOT check: linking, running anything, .cu files, or headers that
#   only exist in the CUDA wheel (a stub stands in for the generated
#   c10/cuda/impl/cuda_cmake_macros.h; ATen/cuda and c10/cuda headers come
#   from the Debian package, which is a CPU build). The compiler is not nvcc.
#
# How: packages are fetched with `apt-get download` using private apt lists
#   and cache under WORKDIR (the system's apt state is never touched) and
#   unpacked with `dpkg-deb -x` into WORKDIR/<suite>/root. Nothing is installed
#   into /. Fetching is skipped when WORKDIR already holds unpacked packages.
#
# Cost: ~500 MB in WORKDIR (mostly the g++-14 toolchain); first run needs
#   network access to deb.debian.org. The two passes take roughly 10-20 min
#   on 2 busy cores (all cores are used, nice'd).
#
# Usage: scripts/check_torch2_headers.sh [WORKDIR]     (default: <repo>/build-torch2)
#   LOOM_CHECK_ONLY=substr   only check files whose path contains substr
#   LOOM_CHECK_PASSES="26 214"  which passes to run (default both)
# Exit: 0 every file compiles in both passes, 1 some file failed, 2 setup failed.
# Full compiler output of failing files: WORKDIR/logs/<pass>/<file>.log
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$REPO/build-torch2}"
DB="$REPO/build/compile_commands.json"

die() { echo "check_torch2_headers: setup failed: $*" >&2; exit 2; }

[[ -f "$DB" ]] || die "missing $DB; configure first: scripts/build.sh (or cmake -S . -B build -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)"
for t in apt-get dpkg-deb python3 c++; do
  command -v "$t" >/dev/null || die "'$t' not found"
done
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$KEYRING" ]] || die "missing $KEYRING (apt-get install debian-archive-keyring)"

mkdir -p "$WORK" || die "cannot create $WORK"
WORK="$(cd "$WORK" && pwd)"

TRIXIE_TORCH_PKGS=(libtorch-dev libgloo-dev)
SID_TORCH_PKGS=(libtorch-dev libgloo-dev)
# trixie g++-14 plus the libraries cc1plus needs to run on a bookworm host.
GCC_PKGS=(cpp-14-x86-64-linux-gnu g++-14-x86-64-linux-gnu gcc-14-x86-64-linux-gnu
  libasan8 libatomic1 libc6-dev libc6 libcc1-0 libgcc-14-dev libgcc-s1 libgmp10
  libhwasan0 libisl23 libitm1 liblsan0 libmpc3 libmpfr6 libquadmath0
  libstdc++-14-dev libstdc++6 libtsan2 libubsan1 libzstd1 zlib1g)

# apt_setup SUITE-DIR "sources.list lines"
apt_opts() {
  local d="$1"
  echo "-q -o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=/dev/null" \
       "-o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache" \
       "-o Debug::NoLocking=1 -o APT::Sandbox::User=root"
}

# fetch NAME SOURCES_DIR PKG... : download PKGs with the apt config in
# SOURCES_DIR and unpack them into $WORK/NAME/root (skipped when stamped).
fetch() {
  local name="$1" srcdir="$2"; shift 2
  local dst="$WORK/$name"
  if [[ -f "$dst/.unpacked" ]]; then
    echo "== $name: already unpacked in $dst"
    return 0
  fi
  echo "== $name: downloading $*"
  mkdir -p "$dst/debs" "$dst/root"
  local opts; opts="$(apt_opts "$srcdir")"
  # shellcheck disable=SC2086
  (cd "$dst/debs" && apt-get $opts download "$@") >"$dst/download.log" 2>&1 \
    || { tail -5 "$dst/download.log" >&2; die "apt-get download for $name (see $dst/download.log)"; }
  local deb
  for deb in "$dst"/debs/*.deb; do
    dpkg-deb -x "$deb" "$dst/root" || die "dpkg-deb -x $deb"
  done
  ( cd "$dst/debs" && ls ) > "$dst/.unpacked"
}

# apt_update SUITE-DIR LINES
apt_update() {
  local d="$1" lines="$2"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  printf '%s\n' "$lines" > "$d/sources.list"
  local opts; opts="$(apt_opts "$d")"
  echo "== apt-get update ($(basename "$d"))"
  # shellcheck disable=SC2086
  apt-get $opts update >"$d/update.log" 2>&1 \
    || { tail -5 "$d/update.log" >&2; die "apt-get update for $(basename "$d") (see $d/update.log)"; }
}

DEB="deb [signed-by=$KEYRING] http://deb.debian.org/debian"
if [[ ! -f "$WORK/trixie/.unpacked" || ! -f "$WORK/gcc/.unpacked" ]]; then
  apt_update "$WORK/apt-trixie" "$DEB trixie main"
fi
fetch trixie "$WORK/apt-trixie" "${TRIXIE_TORCH_PKGS[@]}"
fetch gcc "$WORK/apt-trixie" "${GCC_PKGS[@]}"
if [[ ! -f "$WORK/sid/.unpacked" ]]; then
  apt_update "$WORK/apt-sid" "$DEB sid main"
fi
fetch sid "$WORK/apt-sid" "${SID_TORCH_PKGS[@]}"

# Stub for a header CMake generates in a CUDA build of PyTorch.
STUB="$WORK/stub"
mkdir -p "$STUB/c10/cuda/impl"
cat > "$STUB/c10/cuda/impl/cuda_cmake_macros.h" <<'EOF'
#pragma once
// Stand-in for the header PyTorch's CMake generates in CUDA builds.
#define C10_CUDA_BUILD_SHARED_LIBS
EOF

# g++-14 from the unpacked trixie toolchain: the driver and (via -wrapper)
# cc1plus run through trixie's own ld-linux and libraries.
GROOT="$WORK/gcc/root"
GLIB="$GROOT/usr/lib/x86_64-linux-gnu"
cat > "$WORK/gcc/wrap.sh" <<EOF
#!/bin/sh
prog="\$1"; shift
case "\$prog" in
  */*) exec "$GLIB/ld-linux-x86-64.so.2" --library-path "$GLIB" "\$prog" "\$@";;
  *) exec "\$prog" "\$@";;
esac
EOF
cat > "$WORK/gcc/g++14" <<EOF
#!/bin/sh
exec "$GLIB/ld-linux-x86-64.so.2" --library-path "$GLIB" "$GROOT/usr/bin/x86_64-linux-gnu-g++-14" -wrapper "$WORK/gcc/wrap.sh" "\$@"
EOF
chmod +x "$WORK/gcc/wrap.sh" "$WORK/gcc/g++14"

"$WORK/gcc/g++14" --version >/dev/null 2>&1 || die "g++-14 from $GROOT does not run"
echo 'int main(){}' | "$WORK/gcc/g++14" -std=c++20 -x c++ -fsyntax-only - \
  || die "g++-14 from $GROOT cannot compile a trivial file"
for s in trixie sid; do
  [[ -f "$WORK/$s/root/usr/include/torch/csrc/api/include/torch/torch.h" ]] \
    || die "no torch headers in $WORK/$s/root/usr/include"
done

ver() { sed -n 's/^libtorch-dev_\([^_]*\)_.*/\1/p' "$WORK/$1/.unpacked" | sed 's/%3a/:/'; }
echo "== libtorch-dev: trixie $(ver trixie), sid $(ver sid)"

export LOOM_REPO="$REPO" LOOM_DB="$DB" LOOM_WORK="$WORK" LOOM_STUB="$STUB"
rc=0
run_pass() {  # id label cxx std include-root
  nice -n 10 python3 - "$@" <<'PY'
import concurrent.futures as cf, json, os, re, shlex, shutil, subprocess, sys
pid, label, cxx, std, inc = sys.argv[1:6]
repo, work, stub = os.environ["LOOM_REPO"], os.environ["LOOM_WORK"], os.environ["LOOM_STUB"]
only = os.environ.get("LOOM_CHECK_ONLY", "")
db = json.load(open(os.environ["LOOM_DB"]))

def argv(e):
    return e["arguments"] if "arguments" in e else shlex.split(e["command"])

cmds = {}
for e in db:
    f = os.path.normpath(os.path.join(e["directory"], e["file"]))
    if f.endswith(".cpp") and f not in cmds:
        cmds[f] = (e["directory"], argv(e))
base = [e for e in db if e["file"].endswith("tests/model/llama_test.cpp")]
if not base:
    sys.exit("compile_commands.json has no tests/model/llama_test.cpp to borrow flags from")
bfile = os.path.normpath(os.path.join(base[0]["directory"], base[0]["file"]))
for extra in ["tests/parallel/fused_norm_torch_cuda_test.cpp", "tests/model/llama_cuda_test.cpp",
              "tests/model/tensor_parallel_cuda_test.cpp", "benchmarks/gpu_train_bench.cpp"]:
    f = os.path.join(repo, extra)
    if f not in cmds and os.path.exists(f):
        cmds[f] = (base[0]["directory"], [f if a in (bfile, base[0]["file"]) else a for a in argv(base[0])])

def rewrite(a):
    out, skip = [], False
    for x in a[1:]:
        if skip:
            skip = False; continue
        if x in ("-o", "-MF", "-MT", "-MQ"):
            skip = True; continue
        if x in ("-c", "-MD", "-MMD"):
            continue
        if x.startswith("/usr/include/torch") and out and out[-1] in ("-isystem", "-I"):
            out.pop(); continue
        if x.startswith(("-I/usr/include/torch", "-isystem/usr/include/torch")):
            continue
        x = re.sub(r"-D(LOOM_\w+_TORCH_CUDA)=0", r"-D\1=1", x)
        if x.startswith("-std="):
            x = std
        out.append(x)
    return [cxx, "-isystem", inc, "-isystem", inc + "/torch/csrc/api/include",
            "-isystem", stub, "-fsyntax-only"] + out

files = sorted(f for f in cmds if only in os.path.relpath(f, repo))
logdir = os.path.join(work, "logs", pid)
shutil.rmtree(logdir, ignore_errors=True)
os.makedirs(logdir, exist_ok=True)

def check(f):
    d, a = cmds[f]
    r = subprocess.run(rewrite(a), cwd=d, capture_output=True, text=True)
    return f, r.returncode, r.stdout + r.stderr

fails = 0
with cf.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
    for f, rc, out in ex.map(check, files):
        rel = os.path.relpath(f, repo)
        if rc == 0:
            continue
        fails += 1
        log = os.path.join(logdir, rel.replace("/", "__") + ".log")
        open(log, "w").write(out)
        errs = [l.strip() for l in out.splitlines() if "error:" in l or "fatal error" in l][:3]
        msg = " | ".join(errs) or (out.strip().splitlines() or ["exit %d" % rc])[-1]
        print("FAIL %s: %s" % (rel, msg[:600]), flush=True)
print("%s: %d of %d files compile" % (label, len(files) - fails, len(files)), flush=True)
sys.exit(1 if fails else 0)
PY
}

PASSES="${LOOM_CHECK_PASSES:-26 214}"
for p in $PASSES; do
  case "$p" in
    26)  label="torch $(ver trixie | cut -d. -f1,2) (g++ $(c++ -dumpversion), C++17)"
         echo "== pass: $label"
         run_pass 26 "$label" c++ -std=c++17 "$WORK/trixie/root/usr/include" ;;
    214) label="torch $(ver sid | cut -d. -f1,2) (g++ 14, C++20)"
         echo "== pass: $label"
         run_pass 214 "$label" "$WORK/gcc/g++14" -std=c++20 "$WORK/sid/root/usr/include" ;;
    *) die "unknown pass '$p' in LOOM_CHECK_PASSES (use 26 and/or 214)" ;;
  esac
  r=$?
  if (( r == 1 )); then rc=1; elif (( r != 0 )); then die "pass $p checker crashed (exit $r)"; fi
done
(( rc == 0 )) && echo "== all files compile in every pass" || echo "== failures; full logs under $WORK/logs/"
exit "$rc"
