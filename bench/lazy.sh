#!/usr/bin/env bash
# Lazy pull benchmark (issue 20): time from the pull command to the first
# output of `python3 -c 'import json, email, http.client; print("ok")'` in a
# chroot of the mounted image, eager (pull + mount + run) against lazy
# (pull --lazy + mount + run, files fetched on open), and the bytes fetched
# from the registry and stored at that point. The image is bench/images.sh's
# debian-gzip:latest (bookworm minbase + python3: layers L0..L3), pulled once
# and pushed back by `layerctl push --compression zstd:chunked` to a local
# CNCF registry (docker-registry, 127.0.0.1, plain HTTP). Each timed run
# starts from a fresh store with caches dropped; eager and lazy alternate;
# medians of N runs. --rate R (e.g. 100mbit) adds a run with the registry's
# traffic on lo shaped by tc to R (its own prio band: other loopback
# traffic is not slowed). Writes bench/RESULTS.md's "## lazy pull".
#
#   BUILD=DIR bench/lazy.sh [--runs N] [--rate 100mbit] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 rate=""
bench_args lazy.sh "rate" "$@"

for p in docker-registry skopeo curl; do
  command -v "$p" >/dev/null || die "$p is not installed"
done
[ -d "$cache_dir/images/debian-gzip" ] || bash "$bench_dir/images.sh"
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
mkdir -p "$out_dir"
work=$out_dir/lazy-work
rm -rf "$work"
mkdir -p "$work"
reg_pid=
shaped=0
cleanup() {
  local m
  for m in "$work"/m-*; do umount -l "$m" 2>/dev/null || true; done
  if [ "$shaped" = 1 ]; then tc qdisc del dev lo root 2>/dev/null || true; fi
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && { wait "$reg_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

start_registry "$work"
skopeo copy -q --dest-tls-verify=false "oci:$cache_dir/images/debian-gzip:latest" \
  "docker://$R/bench/python:gz"
"$layerctl" --root "$work/seed" pull -q "$R/bench/python:gz" >/dev/null
"$layerctl" --root "$work/seed" push -q "$R/bench/python:gz" "$R/bench/python:zc" \
  --compression zstd:chunked >/dev/null
rm -rf "$work/seed"
ref=$R/bench/python:zc
image_bytes=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$R/v2/bench/python/manifests/zc" |
  python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
log "image: $ref, $image_bytes bytes of layers"

raw=$work/raw.tsv
: >"$raw"
# run_one eager|lazy LINK: one timed pull + mount + first python output; also
# appends "LINK<tab>TOOL<tab>fetched<tab>stored" to $work/bytes.tsv.
run_one() {
  local tool=$1 link=$2 root=$work/root m=$work/m-$1 t0 t1 out fetched stored flag=
  [ "$tool" = lazy ] && flag=--lazy
  rm -rf "$root"
  mkdir -p "$m"
  drop_caches
  t0=$(now_us)
  out=$("$layerctl" --root "$root" --json pull $flag "$ref")
  "$layerctl" --root "$root" mount --read-only "$ref" "$m" >/dev/null
  [ "$(chroot "$m" /usr/bin/python3 -c 'import json, email, http.client; print("ok")')" = ok ] ||
    die "$tool: python did not print ok"
  t1=$(now_us)
  stored=$(du -s --block-size=1 "$root" | cut -f1)
  "$layerctl" --root "$root" umount "$m" >/dev/null
  fetched=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes_fetched"])' "$out")
  if [ "$tool" = lazy ]; then
    # The daemon's on-demand fetches, from its exit line.
    local log_bytes
    log_bytes=$(grep -ho 'lazy: [0-9]* objects, [0-9]* bytes' "$root"/containers/*/layerfs.log |
      awk '{s += $4} END {print s + 0}')
    fetched=$((fetched + log_bytes))
  fi
  printf '%s\t%s\t%s\t%s\n' "$link" "$tool" "$fetched" "$stored" >>"$work/bytes.tsv"
  rm -rf "$root"
  bench_seconds "$t0" "$t1"
}

links=(loopback)
bench_rounds "$raw" "$runs" "eager lazy" loopback
if [ -n "$rate" ]; then
  # The registry's answers (source port) in a band of their own, shaped.
  # Without the prio qdisc (sch_prio) the run is skipped: shaping all of lo
  # would slow everything else on the machine.
  port=${R##*:}
  if tc qdisc add dev lo root handle 1: prio bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1; then
    shaped=1
    tc qdisc add dev lo parent 1:4 handle 40: tbf rate "$rate" burst 64kb latency 100ms
    tc filter add dev lo protocol ip parent 1:0 prio 1 u32 match ip sport "$port" 0xffff flowid 1:4
    links+=("$rate")
    bench_rounds "$raw" "$runs" "eager lazy" "$rate"
    tc qdisc del dev lo root
    shaped=0
  else
    log "tc has no prio qdisc here: the $rate run is skipped"
  fi
fi

table=$(python3 - "$raw" "$work/bytes.tsv" "$image_bytes" "$runs" "${links[@]}" <<'PY'
import statistics, sys
raw, bytes_tsv, image_bytes, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
links = sys.argv[5:]
t, b = {}, {}
for line in open(raw):
    link, tool, _, s = line.rstrip("\n").split("\t")
    t.setdefault((link, tool), []).append(float(s))
for line in open(bytes_tsv):
    link, tool, f, s = line.rstrip("\n").split("\t")
    b.setdefault((link, tool), []).append((int(f), int(s)))
mib = lambda n: "%.1f MiB" % (n / 1048576)
out = ["Time from the pull command to python's first output in a chroot of the",
       "mount (`import json, email, http.client`), fresh store, caches dropped;",
       "medians of %s runs. Image: bench/images.sh's debian-gzip:latest pushed" % runs,
       "by `layerctl push --compression zstd:chunked` (%s of layers)." % mib(image_bytes),
       "Fetched: bytes read from the registry (pull + the daemon's on-demand",
       "fetches); stored: the store's disk usage at that point.", "",
       "| link | eager | lazy | lazy/eager | fetched eager | fetched lazy | stored eager | stored lazy |",
       "|---|---|---|---|---|---|---|---|"]
for link in links:
    e, l = statistics.median(t[(link, "eager")]), statistics.median(t[(link, "lazy")])
    fe = statistics.median(x[0] for x in b[(link, "eager")])
    fl = statistics.median(x[0] for x in b[(link, "lazy")])
    se = statistics.median(x[1] for x in b[(link, "eager")])
    sl = statistics.median(x[1] for x in b[(link, "lazy")])
    out.append("| %s | %.2f s | %.2f s | %.2f | %s | %s (%.0f%%) | %s | %s (%.0f%%) |" % (
        link, e, l, l / e, mib(fe), mib(fl), 100 * fl / image_bytes, mib(se), mib(sl),
        100 * sl / se))
print("\n".join(out))
PY
)
echo "$table"
[ "$write_results" = 1 ] && write_results_section "lazy pull" "$table"
exit 0
