#!/usr/bin/env bash
# Runtime benchmark (issue 6): the cost of starting a container on layerfs.
#  1. `podman run --rm IMAGE true` with the overlay driver's mount_program =
#     layerfs, mount_program = fuse-overlayfs, and the kernel's overlayfs (no
#     mount_program); one fresh storage root per engine, the image pulled into
#     each beforehand (untimed) from the OCI layout.
#  2. `layerctl bundle` + `runc run` + `layerctl umount` + `layerctl rm` against
#     the same with a kernel overlay mount of the same store layers (mount,
#     runc run, umount, remove the upper); also the `runc run` part alone.
# Image: the Debian image of bench/images.sh (tag latest, layers L0..L3).
# Every repetition runs each engine once, the order rotating; medians (wall
# clock) with ratios to the kernel. Writes the table to bench/RESULTS.md under
# "## runtime".
#
#   bench/runtime.sh [--runs N] [--no-results]
#
# LAYERFS=/path/to/layerfs or BUILD=/path/to/build use an existing build.
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=5
bench_args runtime.sh "" "$@"
need_runs 3

bench_install_deps
need_commands podman runc
debian_layout
tag=latest
bench_build || die "layerfs does not build"
layerfs_bin=${LAYERFS:-$BUILD/fuse/layerfs}
layerctl=$BUILD/tools/layerctl
export LAYERFS=$layerfs_bin
W=$out_dir/runtime
mkdir -p "$out_dir/logs"
RR=$(mktemp -d /tmp/lfsrt.XXXXXX)  # podman's runroot: at most 50 characters
cleanup() {
  local m
  for m in $(grep -o -e " $W/[^ ]*" -e " $RR/[^ ]*" /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}
trap 'cleanup; rm -rf "$RR"' EXIT
cleanup
rm -rf "$W"
mkdir -p "$W"
samples=$W/samples.tsv
printf 'test\tengine\tseconds\n' >"$samples"

# elapsed CMD...: runs CMD (output to the log), prints its wall time in seconds.
elapsed() {
  local t0 t1
  t0=$(now_us)
  "$@" >>"$out_dir/logs/runtime.log" 2>&1 || die "failed: $* (see $out_dir/logs/runtime.log)"
  t1=$(now_us)
  echo "scale=4; ($t1 - $t0) / 1000000" | bc
}
need_commands bc

# ---- 1. podman, three storage setups
podman_for() {  # podman_for ENGINE ARGS...
  local e=$1 opt=()
  shift
  case $e in
    layerfs) opt=(--storage-opt "overlay.mount_program=$layerfs_bin") ;;
    fuse-overlayfs) opt=(--storage-opt "overlay.mount_program=$(command -v fuse-overlayfs)") ;;
    kernel) opt=() ;;
  esac
  podman --root "$W/podman-$e/root" --runroot "$RR/$e" --tmpdir "$W/podman-$e/tmp" \
    --storage-driver overlay "${opt[@]}" --runtime "$(command -v runc)" \
    --cgroup-manager cgroupfs --events-backend file "$@"
}
engines=(layerfs fuse-overlayfs kernel)
declare -A image_id
for e in "${engines[@]}"; do
  log "podman ($e): pull oci:$layout:$tag"
  image_id[$e]=$(podman_for "$e" pull -q "oci:$layout:$tag" 2>>"$out_dir/logs/runtime.log" | tail -n1)
  [ -n "${image_id[$e]}" ] || die "podman ($e) could not pull the image"
  # one untimed run: podman's first run sets up its runtime state
  podman_for "$e" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    "${image_id[$e]}" true >>"$out_dir/logs/runtime.log" 2>&1 || die "podman ($e) run failed"
done
podman_for kernel run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
  "${image_id[kernel]}" sh -c 'grep " / " /proc/mounts' | grep -q ' overlay ' \
  || die "the kernel podman setup does not run on a kernel overlay"
for ((r = 0; r < runs; r++)); do
  for ((k = 0; k < ${#engines[@]}; k++)); do
    e=${engines[$(((k + r) % ${#engines[@]}))]}
    s=$(elapsed podman_for "$e" run --rm --network none --ulimit nofile=1024:1024 \
      --ulimit nproc=1024:1024 "${image_id[$e]}" true)
    printf 'podman run --rm IMAGE true\t%s\t%s\n' "$e" "$s" >>"$samples"
    log "podman $e run $((r + 1)): ${s}s"
  done
done
for e in "${engines[@]}"; do podman_for "$e" rmi -af >/dev/null 2>&1 || true; done

# ---- 2. layerctl bundle + runc run vs a kernel overlay mount + runc run
export LAYERFS_ROOT=$W/store
"$layerctl" -q pull "oci:$layout:$tag" >>"$out_dir/logs/runtime.log" 2>&1 || die "layerctl pull failed"
image="oci:$layout:$tag"
lower=$(store_lowerdir "$image")
# The kernel's bundle uses the config layerctl writes, with its own root.
"$layerctl" -q bundle "$image" "$W/ref" --name ref -- /bin/true >/dev/null
python3 - "$W/ref/config.json" "$W/kb/config.json" "$W/kb/rootfs" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[1]))
c["root"]["path"] = sys.argv[3]
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
"$layerctl" -q umount "$W/ref" && "$layerctl" -q rm ref >/dev/null
mkdir -p "$W/kb/rootfs"

runc_run() { runc --root "$W/runc-state" run -b "$1" "$2" </dev/null; }
# Each cycle sets mount_s, run_s and umount_s.
layerfs_up() { "$layerctl" -q bundle "$image" "$W/lb" --name lb -- /bin/true; }
layerfs_down() { "$layerctl" -q umount "$W/lb" && "$layerctl" -q rm lb && rm -rf "$W/lb"; }
layerfs_cycle() {
  mount_s=$(elapsed layerfs_up)
  run_s=$(elapsed runc_run "$W/lb" "bench-lb")
  umount_s=$(elapsed layerfs_down)
}
kernel_up() {
  mkdir -p "$W/kupper" "$W/kwork" &&
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$W/kupper,workdir=$W/kwork" "$W/kb/rootfs"
}
kernel_down() { umount "$W/kb/rootfs" && rm -rf "$W/kupper" "$W/kwork"; }
kernel_cycle() {
  mount_s=$(elapsed kernel_up)
  run_s=$(elapsed runc_run "$W/kb" "bench-kb")
  umount_s=$(elapsed kernel_down)
}
# one untimed cycle each (page cache, runc's first start)
layerfs_cycle
kernel_cycle
for ((r = 0; r < runs; r++)); do
  order=(layerfs kernel)
  [ $((r % 2)) -eq 1 ] && order=(kernel layerfs)
  for e in "${order[@]}"; do
    t0=$(now_us)
    "${e}_cycle"
    t1=$(now_us)
    total=$(echo "scale=4; ($t1 - $t0) / 1000000" | bc)
    printf 'mount + runc run true + unmount\t%s\t%s\n' "$e" "$total" >>"$samples"
    printf '  of which: runc run true\t%s\t%s\n' "$e" "$run_s" >>"$samples"
    printf '  of which: mount (layerctl bundle / mount -t overlay)\t%s\t%s\n' "$e" "$mount_s" >>"$samples"
    printf '  of which: unmount (layerctl umount + rm / umount + rm -r)\t%s\t%s\n' "$e" "$umount_s" >>"$samples"
    log "runc $e run $((r + 1)): total ${total}s, runc run ${run_s}s"
  done
done

# ---- report
when="$(date -u +%Y-%m-%d) $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
table=$(python3 - "$samples" "$runs" "$when" <<'PY'
import csv, statistics, sys
path, runs, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = list(csv.DictReader(open(path), delimiter="\t"))
tests = []
for r in rows:
    if r["test"] not in tests:
        tests.append(r["test"])
out = ["Measured by `bench/runtime.sh` (%s)." % when, "",
       "Image: the Debian bookworm image of bench/images.sh (layers L0..L3, 4 layers); "
       "runtime runc; median of %d runs, engines alternating; seconds (wall clock). "
       "podman: one storage root per engine (overlay driver; mount_program = layerfs, "
       "fuse-overlayfs, or none = the kernel's overlayfs). runc: `layerctl bundle` + "
       "`runc run` + `layerctl umount` + `layerctl rm`, against mount -t overlay of the "
       "same store layers + the same config.json + umount + removing the upper." % runs, "",
       "| test | engine | median s | runs (s) | vs kernel |", "|---|---|---|---|---|"]
for t in tests:
    med = {}
    for e in ("layerfs", "fuse-overlayfs", "kernel"):
        v = [float(r["seconds"]) for r in rows if r["test"] == t and r["engine"] == e]
        if v:
            med[e] = (statistics.median(v), v)
    for e, (m, v) in med.items():
        ratio = "%.2fx" % (m / med["kernel"][0]) if e != "kernel" and "kernel" in med else ""
        out.append("| %s | %s | %.3f | %s | %s |" % (t, e, m, " ".join("%.2f" % x for x in v), ratio))
print("\n".join(out))
PY
)
echo "$table"
if [ "$write_results" = 1 ]; then
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); from report import replace_section; replace_section(sys.argv[2], "runtime", sys.argv[3])' \
    "$bench_dir/tools" "$bench_dir/RESULTS.md" "$table"
  log "wrote the runtime section of $bench_dir/RESULTS.md"
fi
