#!/usr/bin/env bash
# Metadata-only copy-up (issue 22): `chmod -R go-w /usr` over the Debian image
# of bench/images.sh (tag latest), on layerfs (`layerctl mount`, its default
# options), the kernel's overlayfs with metacopy=on (`layerctl mount
# --kernel`) and fuse-overlayfs (over bench/cache/layers); each run on a fresh
# container. Measures the time of the chmod and how much the upper grows on
# disk after the mount has been idle for 10 s (layerfs's lazy copy-up used to
# copy every file's data in the background), against the data the chmod would
# copy (the apparent size of /usr's regular files). Medians of the runs, the
# engine order rotating; writes the table to bench/RESULTS.md under
# "## metacopy".
#
#   bench/metacopy.sh [--runs N] [--no-results] [--idle SECONDS]
#
# LAYERFS=/path/to/layerfs or BUILD=/path/to/build use an existing build.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 idle=10
bench_args metacopy.sh "idle" "$@"
bench_install_deps
debian_layout
bench_build || die "layerfs does not build"
export LAYERFS=${LAYERFS:-$BUILD/fuse/layerfs}
layerctl=$BUILD/tools/layerctl
W=$out_dir/metacopy
mkdir -p "$out_dir/logs"
cleanup() {
  local m
  for m in $(grep -o " $W/[^ ]*" /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}
trap cleanup EXIT
cleanup
rm -rf "$W"
mkdir -p "$W/mnt"
export LAYERFS_ROOT=$W/store
L() { "$layerctl" "$@" >>"$out_dir/logs/metacopy.log" 2>&1; }
L -q pull "oci:$layout:latest" || die "pull failed (see $out_dir/logs/metacopy.log)"
lowers=$(for i in 3 2 1 0; do printf '%s:' "$cache_dir/layers/L$i"; done)
lowers=${lowers%:}
data=$(find "$cache_dir/layers"/L{0,1,2,3}/usr -type f -printf '%s\n' | awk '{s += $1} END {print s}')
raw=$W/raw.tsv
: >"$raw"

# upper_of NAME: the upper directory of the container called NAME.
upper_of() {
  local c
  for c in "$LAYERFS_ROOT"/containers/*/; do
    grep -qs "\"name\": \"$1\"" "$c/container.json" && { echo "${c}upper"; return; }
  done
}

# run_one ENGINE: prints "SECONDS UPPER_BYTES" for one fresh container.
run_one() {
  local e=$1 mnt=$W/mnt/$1 upper t0 t1
  mkdir -p "$mnt"
  case $e in
    layerfs) L mount "oci:$layout:latest" "$mnt" --name mc-$e
             upper=$(upper_of mc-$e) ;;
    kernel) L mount --kernel "oci:$layout:latest" "$mnt" --name mc-$e
            upper=$(upper_of mc-$e) ;;
    fuse-overlayfs) rm -rf "$W/fo" && mkdir -p "$W/fo/upper" "$W/fo/work"
                    fuse-overlayfs -o "lowerdir=$lowers,upperdir=$W/fo/upper,workdir=$W/fo/work" "$mnt"
                    upper=$W/fo/upper ;;
  esac
  t0=$(now_us)
  chmod -R go-w "$mnt/usr"
  t1=$(now_us)
  sleep "$idle"
  echo "$(bench_seconds "$t0" "$t1") $(du -s --block-size=1 "$upper" | cut -f1)"
  case $e in
    fuse-overlayfs) umount "$mnt"; rm -rf "$W/fo" ;;
    *) L umount "$mnt"; L rm "mc-$e" ;;
  esac
}

engines=(layerfs kernel fuse-overlayfs)
for ((r = 0; r < runs; r++)); do
  for ((k = 0; k < ${#engines[@]}; k++)); do
    e=${engines[$(((k + r) % ${#engines[@]}))]}
    read -r s u < <(run_one "$e")
    printf '%s\t%s\t%s\n' "$e" "$s" "$u" >>"$raw"
    log "$e run $r: chmod -R ${s}s, upper $u bytes"
  done
done

table=$(python3 - "$raw" "$data" "$idle" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
data, idle = int(sys.argv[2]), sys.argv[3]
out = ["`chmod -R go-w /usr` of the Debian image (%.0f MB of file data below /usr); "
       "upper on disk after %s s idle; medians of %d runs." % (data / 1e6, idle, len(rows) // 3),
       "", "| engine | chmod -R (s) | upper (bytes) | upper / data |", "|---|---|---|---|"]
for e in ("kernel", "layerfs", "fuse-overlayfs"):
    s = statistics.median(float(r[1]) for r in rows if r[0] == e)
    u = statistics.median(int(r[2]) for r in rows if r[0] == e)
    out.append("| %s | %.2f | %d | %.2f%% |" % (e, s, u, 100.0 * u / data))
print("\n".join(out))
PY
)
echo "$table"
[ "$write_results" -eq 1 ] && write_results_section metacopy "$table"
exit 0
