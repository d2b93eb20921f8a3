#!/usr/bin/env bash
# The GPU checks of issue 7, on a machine with an NVIDIA GPU, in one run of at most
# LOOM_GPU_CHECK_BUDGET_S seconds (default 470: under 8 minutes), each step under
# `timeout`. Prints everything. Exit status: 0 all passed on a GPU, 1 a step failed,
# 2 the build cannot start (what is missing is named), 3 no GPU (all tests skipped).
#
#   1. Finds what the build needs: nvcc, cmake, ninja, NCCL >= 2.28 (nccl_device/;
#      $NCCL_HOME, /usr/local/cuda, else the NCCL of PyTorch's nvidia-nccl wheel),
#      the Debian dev packages loom's CMake requires (protobuf, nlohmann-json,
#      CLI11, GoogleTest, Gloo). Missing packages come, in this order, from
#      .gpu-deps/ (scripts/fetch_gpu_deps.sh packs them on a Debian machine; they
#      are unpacked into the build folder, never into /), then from apt-get when
#      it is there and works (root or sudo, a reachable mirror); otherwise the
#      script stops and names what is missing. A GPU machine that cannot fetch
#      anything gets .gpu-deps/ with the working tree (the device tool's carry).
#   2. Configures a separate build dir (default build-gpu, or $1): CUDA on, sm_90,
#      tests and benchmarks on, MPI off. With a PyTorch that has CUDA
#      (python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'), against
#      its libtorch, so the torch ops run on CUDA tensors too (the training step
#      test and benchmark, the torch-level fused norm test); if that configure
#      fails, or there is no CUDA PyTorch, against the system libtorch, where only
#      the raw-pointer CUDA/NCCL checks exist.
#   3. Builds only the targets below with all cores, cheapest first, and runs:
#      loom_parallel_cuda_tests (fused all-reduce + RMSNorm: all-reduce,
#      reduce-scatter and symmetric-memory paths, 10^4 launches), loom_nccl_tests,
#      fused_norm_cuda_bench (kernel vs cudaMemcpy bandwidth), the kernels' CUDA
#      tests, and with a CUDA libtorch loom_model_cuda_tests (a training step
#      against the CPU; tensor parallelism over NCCL with token splitting on the
#      side stream against the plain model) and gpu_train_bench.
#
# Environment: LOOM_GPU_CHECK_BUDGET_S (seconds), LOOM_GPU_CHECK_BUILD_S (limit of
# each build step, default 300), LOOM_GPU_CHECK_TORCH (auto | pytorch | system),
# LOOM_GPU_CHECK_JOBS (build jobs, default all cores), NCCL_HOME (an NCCL install
# with include/ and lib/).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
build_dir="${1:-build-gpu}"
budget="${LOOM_GPU_CHECK_BUDGET_S:-470}"
build_limit="${LOOM_GPU_CHECK_BUILD_S:-300}"
torch_choice="${LOOM_GPU_CHECK_TORCH:-auto}"
jobs="${LOOM_GPU_CHECK_JOBS:-$(nproc)}"
failures=()
export PATH="/usr/local/cuda/bin:$PATH"

# step NAME MAX_SECONDS COMMAND...: runs COMMAND under timeout (capped by what is
# left of the budget), prints its output and records a failure.
step() {
  local name="$1" max="$2"
  shift 2
  local left=$((budget - SECONDS))
  if ((left < 15)); then
    echo "== $name: not run, the ${budget}s budget is spent"
    failures+=("$name (no time left)")
    return 1
  fi
  local limit=$((max < left ? max : left))
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$step_log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0))s"
  ((rc == 0)) || failures+=("$name (exit $rc$( ((rc == 124)) && echo ', timed out'))")
  return "$rc"
}

step_log="$(mktemp)"
trap 'rm -f "$step_log"' EXIT

finish() {
  echo "== gpu_check: $((SECONDS))s"
  if ((${#failures[@]} > 0)); then
    printf '== FAILED: %s\n' "${failures[@]}"
    exit 1
  fi
  if [ "$gpu_found" != yes ]; then
    echo "== no GPU found: everything built, every GPU test skipped; nothing was verified on a GPU"
    exit 3
  fi
  echo "== all GPU checks passed"
  exit 0
}

echo "== machine"
gpu_found=no
# The list is read whole before grep looks at it: grep -q exits at its first match,
# and under pipefail the writer's SIGPIPE would then read as "no GPU".
gpu_list=$(command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 || true)
echo "$gpu_list" >&2
if grep -q '^GPU' <<<"$gpu_list"; then gpu_found=yes; fi
[ "$gpu_found" = yes ] || echo "== nvidia-smi finds no GPU: the build still runs, the GPU tests will skip"
nvcc --version 2>&1 | tail -1 || true
# A CUDA 13 runtime needs driver 580 or later; with an older one every test skips.
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null || true

# ---- 1. what the build needs -------------------------------------------------------
has_header() { printf '#include <%s>\n' "$1" | c++ -x c++ -fsyntax-only - >/dev/null 2>&1; }
missing_packages() {
  local m=()
  command -v cmake >/dev/null || m+=(cmake)
  command -v ninja >/dev/null || m+=(ninja-build)
  command -v c++ >/dev/null || m+=(g++)
  { command -v protoc >/dev/null && has_header google/protobuf/message.h; } || m+=(libprotobuf-dev protobuf-compiler)
  has_header nlohmann/json.hpp || m+=(nlohmann-json3-dev)
  has_header CLI/CLI.hpp || m+=(libcli11-dev)
  has_header gtest/gtest.h || m+=(libgtest-dev)
  has_header gmock/gmock.h || m+=(libgmock-dev)
  [ -n "${gloo_args[*]:-}" ] || has_header gloo/context.h || m+=(libgloo-dev)
  echo "${m[@]:-}"
}

torch_prefix="" torch_root=""
if [ "$torch_choice" != system ] &&
  python3 -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
  torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  torch_root="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
  python3 -c 'import torch; print("== PyTorch", torch.__version__, "CUDA", torch.version.cuda,
      "cxx11 abi", torch.compiled_with_cxx11_abi(), "GPUs", torch.cuda.device_count())'
  # loom links Debian's protobuf, GoogleTest and CLI11, built with the C++11 ABI.
  if ! python3 -c 'import sys, torch; sys.exit(0 if torch.compiled_with_cxx11_abi() else 1)'; then
    echo "== this PyTorch uses the pre-C++11 ABI, which cannot link with Debian's libraries:"
    echo "   the system libtorch is used and the torch-level CUDA checks are not run"
    failures+=("PyTorch with the pre-C++11 ABI (torch-level CUDA checks not run)")
    torch_prefix="" torch_root=""
  fi
elif [ "$torch_choice" = pytorch ]; then
  echo "gpu_check: LOOM_GPU_CHECK_TORCH=pytorch but python3 cannot import a CUDA build of torch"
  exit 2
else
  echo "== no CUDA PyTorch: the system libtorch is used; the torch-level CUDA checks are not built"
fi

# loom calls Gloo next to libtorch's ProcessGroupGloo, so the two must be the same
# Gloo: with a PyTorch wheel that ships Gloo's headers, use them and its libtorch_cpu.
gloo_args=()
if [ -n "$torch_root" ] && [ -f "$torch_root/include/gloo/context.h" ]; then
  gloo_args=(-DLOOM_GLOO_INCLUDE_DIR="$torch_root/include" -DLOOM_GLOO_LIBRARY="$torch_root/lib/libtorch_cpu.so")
fi

# Packages carried in .gpu-deps/: unpacked (dpkg-deb, else ar and tar) into one
# folder that the compiler, protoc and CMake are pointed at.
deps_root="$(realpath -m "$build_dir")-deps"
deps_args=()
unpack_carried_packages() {
  compgen -G ".gpu-deps/*.deb" >/dev/null || return 1
  echo "== unpacking $(ls .gpu-deps/*.deb | wc -l) carried packages into $deps_root"
  rm -rf "$deps_root" && mkdir -p "$deps_root" || return 1
  local deb scratch
  for deb in .gpu-deps/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$deps_root" || return 1
    else
      scratch="$(mktemp -d)"
      (cd "$scratch" && ar x "$OLDPWD/$deb") && tar -xf "$scratch"/data.tar.* -C "$deps_root" || return 1
      rm -rf "$scratch"
    fi
  done
  local usr="$deps_root/usr" lib="$deps_root/usr/lib/x86_64-linux-gnu"
  export PATH="$usr/bin:$PATH" CPATH="$usr/include${CPATH:+:$CPATH}"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  deps_args=(-DProtobuf_INCLUDE_DIR="$usr/include" -DProtobuf_LIBRARY="$lib/libprotobuf.so"
    -DProtobuf_PROTOC_EXECUTABLE="$usr/bin/protoc" -DGTest_DIR="$lib/cmake/GTest"
    -Dnlohmann_json_DIR="$usr/share/cmake/nlohmann_json" -DCLI11_DIR="$usr/share/cmake/CLI11")
}

read -r -a missing <<<"$(missing_packages)"
if ((${#missing[@]} > 0)) && unpack_carried_packages; then
  read -r -a missing <<<"$(missing_packages)"
fi
if ((${#missing[@]} > 0)); then
  echo "== missing: ${missing[*]}"
  sudo=()
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo=(sudo -n)
  if command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 90 "${sudo[@]}" apt-get update -qq && timeout 150 "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    read -r -a missing <<<"$(missing_packages)"
  fi
  if ((${#missing[@]} > 0)); then
    echo "gpu_check: cannot build without these Debian packages: ${missing[*]}"
    echo "gpu_check: apt-get is $(command -v apt-get >/dev/null && echo 'there but failed (no root or no mirror?)' || echo 'not installed');"
    echo "gpu_check: install them (scripts/install_deps.sh lists loom's) or bring the headers and point CMake at them"
    exit 2
  fi
fi

# NCCL: $NCCL_HOME; else, with PyTorch, the nvidia-nccl wheel its libtorch_cuda
# loads (one libnccl.so.2 per process: loom must be built for that one; the
# wheel's library is libnccl.so.2 only, so CMake is given the file); else
# /usr/local/cuda.
nccl_version_code() { sed -n 's/^#define NCCL_VERSION_CODE \([0-9]*\).*/\1/p' "$1/nccl.h" 2>/dev/null; }
nccl_args=(-DLOOM_WITH_NCCL=ON)
nccl_include="${NCCL_HOME:+$NCCL_HOME/include}"
if [ -z "$nccl_include" ] && [ -n "$torch_root" ]; then
  wheel_nccl="$(python3 -c 'import importlib.util as u; s = u.find_spec("nvidia.nccl"); print(list(s.submodule_search_locations)[0] if s else "")' 2>/dev/null)"
  if [ -n "$wheel_nccl" ] && [ -f "$wheel_nccl/include/nccl.h" ]; then
    nccl_include="$wheel_nccl/include"
    nccl_library="$(ls "$wheel_nccl"/lib/libnccl.so* 2>/dev/null | head -1)"
    echo "== NCCL of PyTorch's wheel: $nccl_include, $nccl_library"
    nccl_args+=(-DLOOM_NCCL_LIBRARY="$nccl_library")
    # A wheel without the device API's headers: the carried ones, when they are
    # the same release as the library.
    carried=.gpu-deps/nccl/include
    if [ ! -d "$nccl_include/nccl_device" ] && [ -d "$carried/nccl_device" ] &&
      [ "$(nccl_version_code "$carried")" = "$(nccl_version_code "$nccl_include")" ]; then
      echo "== the wheel has no nccl_device/: using the carried headers of the same release ($PWD/$carried)"
      nccl_include="$PWD/$carried"
    fi
  fi
fi
nccl_include="${nccl_include:-/usr/local/cuda/include}"
nccl_args+=(-DLOOM_NCCL_INCLUDE_DIR="$nccl_include")
nccl_code="$(nccl_version_code "$nccl_include")"
if [ -z "$nccl_code" ] || ((nccl_code < 22800)) || [ ! -d "$nccl_include/nccl_device" ]; then
  echo "== NCCL >= 2.28 with nccl_device/ not found in $nccl_include (NCCL_VERSION_CODE '${nccl_code}'):"
  echo "   building without NCCL; the fused all-reduce norm and NCCL checks are skipped (set NCCL_HOME)"
  nccl_args=(-DLOOM_WITH_NCCL=OFF)
  failures+=("NCCL 2.28 missing")
else
  echo "== NCCL $nccl_code in $nccl_include"
fi

# ---- 2. configure ------------------------------------------------------------------
# Warnings stay warnings here: the machine's compiler and PyTorch headers are not
# the ones CI builds with, and a new warning must not cost the scarce GPU run.
configure() {  # configure DIR TORCH_PREFIX_OR_EMPTY
  local args=(-S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOOM_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
    -DLOOM_WERROR=OFF -DLOOM_BUILD_TESTS=ON -DLOOM_BUILD_BENCHMARKS=ON -DLOOM_WITH_MPI=OFF "${nccl_args[@]}" "${deps_args[@]}")
  [ -n "$2" ] && args+=(-DCMAKE_PREFIX_PATH="$2" "${gloo_args[@]}")
  step "configure $1" 120 cmake "${args[@]}"
}
if [ -n "$torch_prefix" ] && ! configure "$build_dir" "$torch_prefix"; then
  echo "== configuring against PyTorch's libtorch failed: falling back to the system libtorch"
  build_dir="$build_dir-system"
  torch_prefix=""
fi
if [ -z "$torch_prefix" ] && ! configure "$build_dir" ""; then
  finish
fi

# ---- 3. build and run, cheapest first ---------------------------------------------
# The list is read whole first: `ninja ... | grep -q` fails under pipefail when grep
# stops reading early (SIGPIPE), which silently dropped targets.
has_target() {
  local all
  all="$(ninja -C "$build_dir" -t targets all 2>/dev/null)"
  grep -q "^$1:" <<<"$all"
}
build() {  # build TARGET...: the ones this configuration defines
  local targets=()
  for t in "$@"; do has_target "$t" && targets+=("$t"); done
  ((${#targets[@]} == 0)) || step "build ${targets[*]}" "$build_limit" ninja -C "$build_dir" -j "$jobs" "${targets[@]}"
}
run() {  # run NAME MAX_SECONDS BINARY ARGS...: when the binary was built
  local name="$1" max="$2" binary="$build_dir/bin/$3"
  shift 3
  if [ ! -x "$binary" ]; then
    echo "== $name: not built here"
    # With a CUDA PyTorch every check must exist: a missing one is no pass.
    [ -z "$torch_prefix" ] || failures+=("$name (not built)")
    return
  fi
  step "$name" "$max" "$binary" "$@" || return
  # On a GPU machine a test or benchmark that found no usable GPU verified nothing
  # (tests that need more GPUs than the machine has may skip).
  if [ "$gpu_found" = yes ] && grep -qE 'found 0|no usable CUDA device|"skipped"' "$step_log"; then
    failures+=("$name (found no usable GPU on a machine with one: see its output)")
  fi
}

build loom_parallel_cuda_tests loom_nccl_tests fused_norm_cuda_bench
# Which NCCL and CUDA runtimes the tests load (a PyTorch wheel may bring its own).
[ -x "$build_dir/bin/loom_parallel_cuda_tests" ] &&
  ldd "$build_dir/bin/loom_parallel_cuda_tests" | grep -E 'libnccl|libcudart|libtorch_cuda' | sed 's/^/== loads /'
run "fused norm CUDA tests" 240 loom_parallel_cuda_tests
run "NCCL communicator tests" 120 loom_nccl_tests
run "fused norm bandwidth benchmark" 120 fused_norm_cuda_bench --reps 50
build loom_kernels_tests loom_model_cuda_tests gpu_train_bench
run "kernels' CUDA tests" 120 loom_kernels_tests --gtest_filter='*Cuda*'
run "training step on CUDA vs CPU, tensor parallel on the side stream" 120 loom_model_cuda_tests
run "one-GPU training throughput" 120 gpu_train_bench --steps 20 --warmup 3
finish
