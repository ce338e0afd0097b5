#!/usr/bin/env bash
# Layer unpack benchmark (issue 2 §7): every layer blob of the Debian images
# (bench/images.sh) unpacked by `layerctl pull oci:DIR:layerN` into a fresh
# store, by GNU tar (`tar -x` with -z / --zstd, i.e. gzip/zstd in a pipe) and by
# `umoci unpack` (no zstd support), in the same run, tools alternating, median
# of N runs. Before every timed run: output removed, `sync`, caches dropped,
# then the blob is read once (input warm, output cold). Writes the table to
# bench/RESULTS.md under "## unpack".
#
#   bench/unpack.sh [--runs N] [--images gzip,zstd,tar] [--layers 0,1,2,3,4,all]
#                   [--no-results]
# Default layers: 0-4 and the whole image (`all`) for every image.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 images=gzip,zstd,tar layers=
bench_args unpack.sh "images layers" "$@"

bench_install_deps
bash "$bench_dir/images.sh"
mkdir -p "$out_dir"
work=$out_dir/unpack-work
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

layerctl=
if bench_build && [ -x "$BUILD/tools/layerctl" ]; then
  # Usable only once `pull oci:` works: try the small top layer.
  if "$BUILD/tools/layerctl" --root "$work/probe" pull "oci:$cache_dir/images/debian-gzip:layer3" \
      >"$work/probe.log" 2>&1; then
    layerctl=$BUILD/tools/layerctl
  else
    log "layerctl pull does not work yet, measuring tar and umoci only: $(tail -n1 "$work/probe.log")"
  fi
  rm -rf "$work/probe"
fi
umoci_version=$(umoci --version 2>/dev/null | sed -n 1p || true)
tar_version=$(tar --version | sed -n 1p)

raw=$out_dir/unpack-raw.tsv
printf 'image\tlayer\ttool\trun\tseconds\n' >"$raw"

blob_of() {  # IMAGE LAYER -> blob path
  python3 - "$cache_dir/images/debian-$1.json" "L$2" <<'EOF'
import json, sys
for l in json.load(open(sys.argv[1]))["layers"]:
    if l["name"] == sys.argv[2]:
        print(sys.argv[1][:-len(".json")] + "/blobs/sha256/" + l["digest"][len("sha256:"):])
EOF
}

# tar_blobs: GNU tar extracts each of run_one's ${blobs[@]} (with its
# ${zflag[@]}) into its own directory under $work/out.
tar_blobs() {
  local n=0 b
  for b in "${blobs[@]}"; do
    mkdir "$work/out/$n"
    tar -x "${zflag[@]}" -f "$b" -C "$work/out/$n" --numeric-owner --same-permissions \
      --same-owner --xattrs --xattrs-include='*' || die "tar failed on $b"
    n=$((n + 1))
  done
}

# run_one TOOL IMAGE LAYER -> prints seconds, or nothing if not applicable
run_one() {
  local tool=$1 img=$2 layer=$3 layout=$cache_dir/images/debian-$2 t0 t1 tag blobs=() b
  if [ "$layer" = all ]; then tag=big; else tag=layer$layer; fi
  case $tool in
    layerctl) [ -n "$layerctl" ] || return 0 ;;
    umoci) [ "$img" != zstd ] || return 0 ;;
  esac
  if [ "$layer" = all ]; then
    for b in 0 1 2 3 4; do blobs+=("$(blob_of "$img" $b)"); done
  else
    blobs=("$(blob_of "$img" "$layer")")
  fi
  rm -rf "$work/out"
  mkdir -p "$work/out"
  drop_caches
  cat "${blobs[@]}" >/dev/null
  local zflag=()
  case $img in gzip) zflag=(-z) ;; zstd) zflag=(--zstd) ;; esac
  t0=$(now_us)
  case $tool in
    layerctl)
      "$layerctl" --root "$work/out/store" pull "oci:$layout:$tag" >"$work/log" 2>&1 ||
        { cat "$work/log" >&2; die "layerctl pull failed"; } ;;
    tar) tar_blobs ;;
    tar+sync)
      # GNU tar, then its output made durable (as layerctl's is): `sync -f`
      # syncs the file system holding the output, like layerctl's syncfs.
      tar_blobs
      sync -f "$work/out" ;;
    umoci)
      umoci unpack --image "$layout:$tag" "$work/out/bundle" >"$work/log" 2>&1 ||
        { cat "$work/log" >&2; die "umoci unpack failed"; } ;;
  esac
  t1=$(now_us)
  bench_seconds "$t0" "$t1"
}

IFS=, read -r -a img_list <<<"$images"
for img in "${img_list[@]}"; do
  l=$layers
  [ -n "$l" ] || l=0,1,2,3,4,all
  IFS=, read -r -a layer_list <<<"$l"
  for layer in "${layer_list[@]}"; do
    bench_rounds "$raw" "$runs" "layerctl tar tar+sync umoci" "$img" "$layer"
  done
done
rm -rf "$work/out"

notes="GNU tar ${tar_version#tar (GNU tar) }; ${umoci_version:-umoci missing}; $(nproc) cores, kernel $(uname -r)"
args=(unpack "$raw" --cache "$cache_dir" --runs "$runs" --notes "$notes")
[ -n "$layerctl" ] && args+=(--commit "$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo '?')")
if [ $write_results -eq 1 ]; then args+=(--results "$bench_dir/RESULTS.md"); fi
python3 "$bench_dir/tools/report.py" "${args[@]}"
