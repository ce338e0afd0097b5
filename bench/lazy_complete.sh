#!/usr/bin/env bash
# Lazy pull's background completion (issue 20): the time from `pull --lazy`
# to the image being whole through the daemon's background completion
# (`mount` returns at once; the daemon logs "background completion done"
# once every layer is verified and ordinary), against an eager `pull` of the
# same image; and the latency of opening a file that is not yet fetched
# while the completion stream runs, against the same opens with --no-fetch.
# The image is bench/images.sh's debian-gzip:latest if it is cached, else
# the test cache's debootstrap rootfs (/var/cache/layerfs-test) in three
# layers; pushed by `layerctl push --compression zstd:chunked` to a local
# CNCF registry (127.0.0.1, plain HTTP). Each run's store on an ext4 made
# afresh (a loop device), caches dropped,
# eager and lazy alternating, medians of N runs. Writes bench/RESULTS.md's
# "## lazy completion".
#
#   BUILD=DIR bench/lazy_complete.sh [--runs N] [--ratelimit R] [--no-results]
#     --ratelimit R    mount's --fetch-rate for all the runs (default:
#                      mount's own default)
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 ratelimit=""
bench_args lazy_complete.sh "ratelimit" "$@"
need_commands docker-registry skopeo curl
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
mkimage=$BUILD/tests/fixtures/mkimage
mkdir -p "$out_dir"
work=$out_dir/lazy-complete-work
rm -rf "$work"
mkdir -p "$work"
reg_pid=
st=$work/st  # the timed stores: a fresh ext4 for each run
fs_img=$out_dir/lazy-complete-ext4.img
mkdir -p "$st"
cleanup() {
  local m
  for m in "$work"/m-*; do umount -l "$m" 2>/dev/null || true; done
  mountpoint -q "$st" && umount -l "$st"
  rm -f "$fs_img"
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && { wait "$reg_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
# fresh_fs: an empty ext4 at $st (an ext4 that held the last run's deleted
# store makes inode creation slower: bench/sharing.sh).
fresh_fs() {
  if mountpoint -q "$st"; then umount "$st"; fi
  rm -f "$fs_img"
  truncate -s 4G "$fs_img"
  mkfs.ext4 -q "$fs_img" >/dev/null
  mount -o loop "$fs_img" "$st"
}
trap cleanup EXIT

start_registry "$work"
if [ -d "$cache_dir/images/debian-gzip" ]; then
  source_name="bench/images.sh's debian-gzip:latest"
  skopeo copy -q --dest-tls-verify=false "oci:$cache_dir/images/debian-gzip:latest" \
    "docker://$R/bench/img:gz"
else
  rootfs=/var/cache/layerfs-test/bookworm-minbase
  [ -d "$rootfs/usr/lib" ] || die "no bench image (bench/images.sh) and no $rootfs"
  [ -x "$mkimage" ] || die "$mkimage is not built"
  source_name="the debootstrap minbase rootfs in 3 layers (/usr/lib, /usr/share, the rest)"
  mkdir -p "$work/l/lib/usr" "$work/l/share/usr" "$work/l/rest"
  cp -a "$rootfs/usr/lib" "$work/l/lib/usr/"
  cp -a "$rootfs/usr/share" "$work/l/share/usr/"
  tar -C "$rootfs" --exclude=./usr/lib --exclude=./usr/share --exclude=./proc --exclude=./sys \
    --exclude=./dev -cf - . | tar -C "$work/l/rest" -xf -
  "$mkimage" --out "$work/oci" --format oci --compression gzip --tag gz \
    --layer "$work/l/rest" --layer "$work/l/lib" --layer "$work/l/share" >/dev/null
  skopeo copy -q --dest-tls-verify=false "oci:$work/oci:gz" "docker://$R/bench/img:gz"
  rm -rf "$work/l" "$work/oci"
fi
"$layerctl" --root "$work/seed" pull -q "$R/bench/img:gz" >/dev/null
"$layerctl" --root "$work/seed" push -q "$R/bench/img:gz" "$R/bench/img:zc" \
  --compression zstd:chunked >/dev/null
ref=$R/bench/img:zc
# The files the latency runs open: 8 regular files of 64 KiB..4 MiB under
# usr/lib, spread over the listing.
mkdir -p "$work/m-seed"
"$layerctl" --root "$work/seed" mount --read-only "$R/bench/img:gz" "$work/m-seed" >/dev/null
(cd "$work/m-seed" && find usr/lib -type f -size +64k -size -4096k | sort |
  awk '{a[NR] = $0} END {for (i = 1; i <= 8; i++) print a[int(i * NR / 9)]}') >"$work/files"
"$layerctl" --root "$work/seed" umount "$work/m-seed" >/dev/null
rm -rf "$work/seed"
image_bytes=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$R/v2/bench/img/manifests/zc" |
  python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
log "image: $ref ($source_name), $image_bytes bytes of layers"
rate_flag=()
[ -n "$ratelimit" ] && rate_flag=(--fetch-rate "$ratelimit")

# wait_complete ROOT: until the daemon logs its completion (300 s).
wait_complete() {
  local i
  for i in $(seq 30000); do
    grep -qs "background completion done" "$1"/containers/*/layerfs.log && return 0
    sleep 0.01
  done
  die "no completion within 300 s"
}

# run_one eager|lazy: seconds from the pull command to a whole image.
run_one() {
  local tool=$1 root=$st/root m=$work/m-$1 t0 t1
  fresh_fs
  mkdir -p "$m"
  drop_caches
  t0=$(now_us)
  if [ "$tool" = eager ]; then
    "$layerctl" --root "$root" pull -q "$ref" >/dev/null
    t1=$(now_us)
  else
    "$layerctl" --root "$root" pull -q --lazy "$ref" >/dev/null
    "$layerctl" --root "$root" mount --read-only "${rate_flag[@]}" "$ref" "$m" >/dev/null
    wait_complete "$root"
    t1=$(now_us)
    grep -q "layers complete" "$root"/containers/*/layerfs.log
    [ -z "$(ls "$root"/layers/sha256/*/lazy.json 2>/dev/null)" ] || die "layers still lazy"
    "$layerctl" --root "$root" umount "$m" >/dev/null
  fi
  umount "$st"
  bench_seconds "$t0" "$t1"
}

# latency_one bg|nofetch: opens each listed file (read whole) 2.2 s apart
# (the stream keeps quiet for 1 s after an on-demand fetch),
# beginning 1.5 s after the mount (bg: the stream has started); prints the
# median open+read milliseconds of the files read before the completion
# ended (bg) or of all (nofetch), and how many counted.
latency_one() {
  local mode=$1 root=$st/root m=$work/m-lat flags=(--no-fetch)
  [ "$mode" = bg ] && flags=("${rate_flag[@]}")
  fresh_fs
  mkdir -p "$m"
  "$layerctl" --root "$root" pull -q --lazy "$ref" >/dev/null
  drop_caches
  "$layerctl" --root "$root" mount --read-only "${flags[@]}" "$ref" "$m" >/dev/null
  python3 - "$m" "$work/files" "$root" <<'PY'
import glob, statistics, sys, time
m, files, root = sys.argv[1:4]
def done():
    return any("background completion done" in open(p).read()
               for p in glob.glob(root + "/containers/*/layerfs.log"))
time.sleep(1.5)
ms = []
for f in open(files).read().split("\n"):
    if not f:
        continue
    if done():
        break
    t = time.perf_counter()
    with open(m + "/" + f, "rb") as fh:
        while fh.read(1 << 20):
            pass
    ms.append((time.perf_counter() - t) * 1000)
    time.sleep(2.2)
print("%.1f %d" % (statistics.median(ms) if ms else float("nan"), len(ms)))
PY
  "$layerctl" --root "$root" umount "$m" >/dev/null
  umount "$st"
}

raw=$work/raw.tsv
: >"$raw"
bench_rounds "$raw" "$runs" "eager lazy" completion
lat=$work/lat.tsv
: >"$lat"
for ((r = 0; r < runs; r++)); do
  for mode in bg nofetch; do
    out=$(latency_one "$mode")
    read -r ms n <<<"$out"
    printf '%s\t%s\t%s\n' "$mode" "$ms" "$n" >>"$lat"
    log "latency $mode run $r: ${ms} ms (median of $n opens)"
  done
done

table=$(python3 - "$raw" "$lat" "$image_bytes" "$runs" "$source_name" "${ratelimit:-default (64M)}" <<'PY'
import statistics, sys
raw, lat, image_bytes, runs, source, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
t = {}
for line in open(raw):
    _, tool, _, s = line.rstrip("\n").split("\t")
    t.setdefault(tool, []).append(float(s))
l = {}
for line in open(lat):
    mode, ms, n = line.rstrip("\n").split("\t")
    if ms != "nan":
        l.setdefault(mode, []).append((float(ms), int(n)))
e, z = statistics.median(t["eager"]), statistics.median(t["lazy"])
out = ["Time from the pull command to a whole image, a fresh store on an ext4",
       "made afresh for each run (loop device), caches dropped,",
       "medians of %s runs (eager and lazy alternating). Image: %s," % (runs, source),
       "pushed by `layerctl push --compression zstd:chunked` (%.1f MiB of layers)." % (image_bytes / 1048576),
       "Eager: `layerctl pull`. Lazy: `pull --lazy` + `mount` (background",
       "completion on, --fetch-rate %s) until the daemon logs that every layer" % rate,
       "is verified and ordinary.", "",
       "| eager pull | lazy pull + background completion | ratio (target <= 1.2) |",
       "|---|---|---|",
       "| %.2f s | %.2f s | %.2f |" % (e, z, z / e), "",
       "Open + read of a file not yet fetched (8 files of 64 KiB..4 MiB under",
       "usr/lib, 2.2 s apart, from 1.5 s after the mount), median per run, then",
       "the median of the runs; `bg`: only opens made before the completion ended.", "",
       "| while the completion runs | with --no-fetch |", "|---|---|"]
def cell(mode):
    v = l.get(mode, [])
    if not v:
        return "n/a (done before the first open)"
    return "%.1f ms (%d opens over %d runs)" % (statistics.median(x[0] for x in v),
                                                sum(x[1] for x in v), len(v))
out.append("| %s | %s |" % (cell("bg"), cell("nofetch")))
print("\n".join(out))
PY
)
echo "$table"
[ "$write_results" = 1 ] && write_results_section "lazy completion" "$table"
exit 0
