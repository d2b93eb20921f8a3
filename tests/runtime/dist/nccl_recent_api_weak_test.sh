#!/usr/bin/env bash
# nccl_recent_api_weak_test.sh HEADER LIBRARY
# Every NCCL entry point that HEADER (runtime/dist/nccl_recent_api.h) declares weak is, where
# LIBRARY references it, a weak reference ("w" in nm -D): only then does LIBRARY load into a
# process whose NCCL (PyTorch's) is older than it. ncclCommShrink must be among them
# (NcclCommunicator::shrink calls it), so the check cannot pass with nothing referenced.
set -euo pipefail
header="$1" library="$2"
mapfile -t names < <(sed -n 's/^#pragma weak \([A-Za-z0-9_]*\).*/\1/p' "$header")
((${#names[@]} > 0)) || { echo "FAIL: no '#pragma weak' names in $header"; exit 1; }
references="$(nm -D --undefined-only "$library")"
status=0 shrink=""
for name in "${names[@]}"; do
  kind="$(awk -v n="$name" '$2 == n { print $1 }' <<<"$references")"
  case "$kind" in
    w) echo "weak reference: $name" ;;
    "") echo "not referenced: $name" ;;
    *) echo "FAIL: $library references $name strongly ($kind): include runtime/dist/nccl_recent_api.h in the file that calls it"
       status=1 ;;
  esac
  [[ $name == ncclCommShrink && -n $kind ]] && shrink=yes
done
[[ -n $shrink ]] || { echo "FAIL: $library does not reference ncclCommShrink: is it built with NCCL?"; status=1; }
exit "$status"
