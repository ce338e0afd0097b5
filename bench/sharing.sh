#!/usr/bin/env bash
# File-level sharing benchmark (issue 19, store format 2). Image 1 is the
# Debian image of bench/images.sh (debian-gzip:latest, layers L0..L3); image 2
# is the same rootfs (bench/cache/rootfs) as one layer with every mtime
# changed, made with tests/fixtures/mkimage. Per run, in fresh stores:
#   format 2   `layerctl pull --drop-blobs` of image 1, then of image 2
#   format 1   the same with --inline-files (every file in its layer)
# and reports the first pull's time, the disk each image adds (du of the
# store), and the page cache added by reading the ~100 largest shared
# libraries through a mount of image 2 after reading them through a mount of
# image 1 (memory cgroup of the readers and daemons). Medians of N runs.
# Not yet compared: podman's c/storage overlay and containerd (see RESULTS.md).
#
#   bench/sharing.sh [--runs N] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3
bench_args sharing.sh "" "$@"
[ -f "$cache_dir/rootfs.complete" ] || bash "$bench_dir/images.sh"
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
mkimage=$BUILD/tests/fixtures/mkimage
[ -x "$mkimage" ] || die "no $mkimage (build the tests)"
work=$out_dir/sharing-work
rm -rf "$work"
mkdir -p "$work/mnt1" "$work/mnt2"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup/bench-sharing-$$ key=file
else
  cg=/sys/fs/cgroup/memory/bench-sharing-$$ key=cache
fi
cleanup() {
  for m in "$work/mnt1" "$work/mnt2"; do mountpoint -q "$m" && umount -l "$m"; done
  [ -d "$cg" ] && rmdir "$cg" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

log "image 2: the rootfs as one layer, every mtime changed"
cp -a "$cache_dir/rootfs" "$work/rootfs2"
find "$work/rootfs2" -exec touch -h -d 2021-03-03 {} +
"$mkimage" --out "$work/img2" --format oci --tag latest --layer "$work/rootfs2" >/dev/null
rm -rf "$work/rootfs2"
img1="oci:$cache_dir/images/debian-gzip:latest" img2="oci:$work/img2:latest"

store_bytes() { du -s --block-size=1 "$1" | cut -f1; }
declare -A t1 d1 d2 pc
for ((r = 1; r <= runs; r++)); do
  for fmt in 2 1; do
    root=$work/store-$fmt
    rm -rf "$root"
    flags=(--drop-blobs)
    [ $fmt = 1 ] && flags+=(--inline-files)
    sync
    drop_caches
    s=$(now_us)
    "$layerctl" --root "$root" -q pull "${flags[@]}" "$img1" >/dev/null
    t1[$fmt]+="$(( $(now_us) - s )) "
    a=$(store_bytes "$root")
    "$layerctl" --root "$root" -q pull "${flags[@]}" "$img2" >/dev/null
    b=$(store_bytes "$root")
    d1[$fmt]+="$a " d2[$fmt]+="$((b - a)) "
    # Page cache: the 100 largest .so files, read through image 1's mount,
    # then through image 2's, daemons and readers in one memory cgroup.
    mkdir -p "$cg"
    (
      echo $BASHPID >"$cg/cgroup.procs"
      "$layerctl" --root "$root" mount --read-only "$img1" "$work/mnt1" >/dev/null
      "$layerctl" --root "$root" mount --read-only "$img2" "$work/mnt2" >/dev/null
      (cd "$work/mnt1" && find usr/lib -name '*.so*' -type f -printf '%s %p\n' | sort -rn |
        head -100 | cut -d' ' -f2) >"$work/libs"
      sync
      drop_caches
      (cd "$work/mnt1" && xargs cat <"$work/libs" >/dev/null)
      x=$(awk -v k=$key '$1 == k {print $2}' "$cg/memory.stat")
      (cd "$work/mnt2" && xargs cat <"$work/libs" >/dev/null)
      y=$(awk -v k=$key '$1 == k {print $2}' "$cg/memory.stat")
      echo $((y - x)) >"$work/pc"
      "$layerctl" --root "$root" umount "$work/mnt1" "$work/mnt2" >/dev/null
    )
    pc[$fmt]+="$(cat "$work/pc") "
    rmdir "$cg" 2>/dev/null || true
    log "run $r format $fmt: first pull $(( $(echo ${t1[$fmt]} | awk '{print $NF}') / 1000 )) ms, image 1 $a B, image 2 adds $((b - a)) B, page cache +$(cat "$work/pc") B"
  done
done

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
table="| store | first pull (image 1) | image 1 on disk | image 2 adds | page cache, 100 libs via image 2 |
|---|---|---|---|---|"
for fmt in 2 1; do
  tp=$(median <<<"${t1[$fmt]}") a=$(median <<<"${d1[$fmt]}")
  b=$(median <<<"${d2[$fmt]}") p=$(median <<<"${pc[$fmt]}")
  table+="
| format $fmt | $(awk -v u="$tp" 'BEGIN {printf "%.2f s", u / 1e6}') | $(mib "$a") | $(mib "$b") ($(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f%%", 100 * b / a}')) | $(mib "$p") |"
done
echo "$table"
[ "$write_results" = 1 ] && write_results_section sharing "$table"
exit 0
