#!/usr/bin/env bash
# Mount benchmark (issue 22): the time to mount and to unmount a container of
# an already pulled image, against the kernel's overlayfs over the same store
# layers.
#   layerfs: `layerctl mount IMAGE DIR`, then `layerctl umount DIR` +
#            `layerctl rm NAME` (the daemon started, waited for, stopped and
#            its container removed, as users and scripts run it);
#   kernel:  `mount -t overlay` of the image's layer directories with a fresh
#            upper and work dir, then `umount` + `rm -r` of upper and work.
# Image: the Debian image of bench/images.sh (tag latest). Every repetition
# runs both engines, the order alternating; medians (wall clock, each command
# started from this shell) with ratios to the kernel. Writes the table to
# bench/RESULTS.md under "## mount".
#
#   bench/mount.sh [--runs N] [--no-results]
#
# LAYERFS=/path/to/layerfs or BUILD=/path/to/build use an existing build.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=15
bench_args mount.sh "" "$@"
need_runs 3

debian_layout
bench_build || die "layerfs does not build"
layerctl=$BUILD/tools/layerctl
export LAYERFS=${LAYERFS:-$BUILD/fuse/layerfs}
W=$out_dir/mount
mkdir -p "$out_dir/logs"
logf=$out_dir/logs/mount.log
trap 'unmount_under "$W"' EXIT
unmount_under "$W"
rm -rf "$W"
mkdir -p "$W/lmnt" "$W/kmnt"
samples=$W/samples.tsv
printf 'test\tengine\tseconds\n' >"$samples"

export LAYERFS_ROOT=$W/store
image="oci:$layout:latest"
"$layerctl" -q pull "$image" >>"$logf" 2>&1 || die "layerctl pull failed (see $logf)"
lower=$(store_lowerdir "$image")

# elapsed CMD...: runs CMD (output to the log), prints its wall time in seconds.
elapsed() {
  local t0 t1
  t0=$(now_us)
  "$@" >>"$logf" 2>&1 || die "failed: $* (see $logf)"
  t1=$(now_us)
  echo $((t1 - t0)) | awk '{ printf "%.4f\n", $1 / 1e6 }'
}
layerfs_up() { "$layerctl" -q mount "$image" "$W/lmnt" --name mb; }
layerfs_down() { "$layerctl" -q umount "$W/lmnt" && "$layerctl" -q rm mb; }
kernel_up() {
  mkdir "$W/kupper" "$W/kwork" &&
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$W/kupper,workdir=$W/kwork" "$W/kmnt"
}
kernel_down() { umount "$W/kmnt" && rm -r "$W/kupper" "$W/kwork"; }
cycle() {  # cycle ENGINE: one mount and unmount, both recorded
  local e=$1 up down
  up=$(elapsed "${e}_up")
  ls "$W/${e:0:1}mnt" >/dev/null  # the mount serves
  down=$(elapsed "${e}_down")
  printf 'mount\t%s\t%s\nunmount\t%s\t%s\n' "$e" "$up" "$e" "$down" >>"$samples"
  log "$e: mount ${up}s, unmount ${down}s"
}
# one untimed cycle each (page cache)
cycle layerfs >/dev/null 2>&1
cycle kernel >/dev/null 2>&1
printf 'test\tengine\tseconds\n' >"$samples"
for ((r = 0; r < runs; r++)); do
  if [ $((r % 2)) -eq 0 ]; then cycle layerfs; cycle kernel; else cycle kernel; cycle layerfs; fi
done

when="$(date -u +%Y-%m-%d) $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
commit=$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo "?")
table=$(python3 - "$samples" "$runs" "$when" "$commit" <<'PY'
import csv, statistics, sys
path, runs, when, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = list(csv.DictReader(open(path), delimiter="\t"))
out = ["Measured by `bench/mount.sh` at %s (%s)." % (commit, when), "",
       "Image: the Debian bookworm image of bench/images.sh (4 layers), already pulled. "
       "layerfs: `layerctl mount IMAGE DIR` / `layerctl umount DIR` + `layerctl rm NAME`; "
       "kernel: `mount -t overlay` of the same store layers with a new upper and work dir / "
       "`umount` + `rm -r` of them. Median of %d runs, engines alternating; milliseconds "
       "(wall clock, from the shell)." % runs, "",
       "| step | engine | median ms | min | max | vs kernel |", "|---|---|---|---|---|---|"]
for t in ("mount", "unmount"):
    med = {}
    for e in ("layerfs", "kernel"):
        v = [float(r["seconds"]) * 1000 for r in rows if r["test"] == t and r["engine"] == e]
        med[e] = (statistics.median(v), min(v), max(v))
    for e, (m, lo, hi) in med.items():
        ratio = "%.2fx" % (m / med["kernel"][0]) if e != "kernel" else ""
        out.append("| %s | %s | %.1f | %.1f | %.1f | %s |" % (t, e, m, lo, hi, ratio))
print("\n".join(out))
PY
)
echo "$table"
if [ "$write_results" = 1 ]; then write_section mount "$table"; fi
