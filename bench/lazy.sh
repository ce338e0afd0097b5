#!/usr/bin/env bash
# Lazy pull benchmark (issue 20): time from the pull command to the first
# output of `python3 -c 'import json, email, http.client; print("ok")'` in a
# chroot of the mounted image, eager (pull + mount + run) against lazy
# (pull --lazy + mount --no-fetch + run, files fetched on open; and with the
# default mount, whose background completion runs beside the python), and the
# bytes fetched from the registry and stored at that point. The image is
# bench/images.sh's debian-gzip:latest (bookworm minbase + python3: layers
# L0..L3), pulled once and pushed back by `layerctl push --compression
# zstd:chunked` to a local CNCF registry (docker-registry, 127.0.0.1, plain
# HTTP). Each timed run starts from a fresh store with caches dropped; the
# tools alternate; medians of N runs. --rate R (e.g. 100mbit) adds a run through
# bench/tools/throttle.py, a userspace token-bucket TCP proxy on loopback in
# front of the registry (this kernel has no prio qdisc, so tc cannot shape
# the registry's port alone). Completion: `pull --lazy` followed by a plain
# `pull` (which fetches and verifies the rest) against the eager pull alone.
# Peer: podman 4.3's partial pull (enable_partial_images, its own storage.conf
# and graphroot) + `podman run` of the same python (runc), where installed.
# Writes bench/RESULTS.md's "## lazy pull".
#
#   BUILD=DIR bench/lazy.sh [--runs N] [--rate 100mbit] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 rate=""
bench_args lazy.sh "rate" "$@"

need_commands docker-registry skopeo curl
have_podman=0
if command -v podman >/dev/null && [ -x /usr/sbin/runc ]; then have_podman=1; fi
[ -d "$cache_dir/images/debian-gzip" ] || bash "$bench_dir/images.sh"
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
mkdir -p "$out_dir"
work=$out_dir/lazy-work
rm -rf "$work"
mkdir -p "$work"
reg_pid= proxy_pid=
cleanup() {
  local m
  for m in "$work"/m-*; do umount -l "$m" 2>/dev/null || true; done
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && { wait "$proxy_pid" 2>/dev/null || true; }
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
direct_ref=$R/bench/python:zc
ref=$direct_ref
image_bytes=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$R/v2/bench/python/manifests/zc" |
  python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
log "image: $ref, $image_bytes bytes of layers"

raw=$work/raw.tsv
: >"$raw"
# run_one eager|lazy|lazydef|complete LINK: eager and lazy(def): one timed pull + mount +
# first python output; also appends "LINK<tab>TOOL<tab>fetched<tab>stored" to
# $work/bytes.tsv, and eager the pull's own seconds to $work/pull.tsv.
# complete: `pull --lazy` then a plain `pull` (the completion), no mount.
run_one() {
  local tool=$1 link=$2 root=$work/root m=$work/m-$1 t0 t1 tp out fetched stored flag=
  case $tool in lazy | lazydef) flag=--lazy ;; esac
  rm -rf "$root"
  mkdir -p "$m"
  drop_caches
  t0=$(now_us)
  if [ "$tool" = podman ]; then
    # podman 4.3's partial pull of the same zstd:chunked image (own storage.conf
    # with enable_partial_images, own graphroot), then the same python in a
    # container (runc; see shared notes on runtimes).
    [ "$have_podman" = 1 ] || return 0
    local pd=$work/podman
    rm -rf "$pd"
    mkdir -p "$pd"
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/graph"\nrunroot = "%s/run"\n[storage.options]\npull_options = {enable_partial_images = "true"}\n' \
      "$pd" "$pd" >"$pd/storage.conf"
    printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' \
      "${ref%%/*}" >"$pd/registries.conf"
    t0=$(now_us)
    out=$(CONTAINERS_STORAGE_CONF=$pd/storage.conf CONTAINERS_REGISTRIES_CONF=$pd/registries.conf \
      podman run --rm --pull always --runtime /usr/sbin/runc --network none \
      --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
      "$ref" /usr/bin/python3 -c 'import json, email, http.client; print("ok")' 2>"$pd/err")
    t1=$(now_us)
    [ "$out" = ok ] || die "podman: python did not print ok: $(tail -1 "$pd/err")"
    rm -rf "$pd"
    bench_seconds "$t0" "$t1"
    return
  fi
  if [ "$tool" = complete ]; then
    "$layerctl" --root "$root" pull -q --lazy "$ref" >/dev/null
    "$layerctl" --root "$root" pull -q "$ref" >/dev/null
    t1=$(now_us)
    rm -rf "$root"
    bench_seconds "$t0" "$t1"
    return
  fi
  out=$("$layerctl" --root "$root" --json pull $flag "$ref")
  tp=$(now_us)
  [ "$tool" = eager ] && printf '%s\t%s\n' "$link" "$(bench_seconds "$t0" "$tp")" >>"$work/pull.tsv"
  # lazy: --no-fetch, only the opened files, so that fetched and stored are
  # what the first output needed; lazydef: the default mount, with the
  # background completion running beside the python (its bytes are
  # bench/lazy_complete.sh's subject, its time is reported here).
  local mflag=
  [ "$tool" = lazy ] && mflag=--no-fetch
  "$layerctl" --root "$root" mount --read-only $mflag "$ref" "$m" >/dev/null
  [ "$(chroot "$m" /usr/bin/python3 -c 'import json, email, http.client; print("ok")')" = ok ] ||
    die "$tool: python did not print ok"
  t1=$(now_us)
  stored=$(du -s --block-size=1 "$root" | cut -f1)
  "$layerctl" --root "$root" umount "$m" >/dev/null
  fetched=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["bytes_fetched"])' "$out")
  if [ "$tool" = lazy ] || [ "$tool" = lazydef ]; then
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
bench_rounds "$raw" "$runs" "eager lazy lazydef complete podman" loopback
if [ -n "$rate" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 "$bench_dir/tools/throttle.py" --listen "$port" --to "$R" --rate "$rate" >"$work/proxy.out" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 50); do grep -q ready "$work/proxy.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$work/proxy.out" || die "throttle.py did not start: $(cat "$work/proxy.out")"
  ref=127.0.0.1:$port/bench/python:zc
  links+=("$rate")
  bench_rounds "$raw" "$runs" "eager lazy lazydef complete podman" "$rate"
  kill "$proxy_pid"
  wait "$proxy_pid" 2>/dev/null || true
  proxy_pid=
  ref=$direct_ref
fi

table=$(python3 - "$raw" "$work/bytes.tsv" "$work/pull.tsv" "$image_bytes" "$runs" "${links[@]}" <<'PY'
import statistics, sys
raw, bytes_tsv, pull_tsv, image_bytes, runs = sys.argv[1:4] + [int(sys.argv[4]), sys.argv[5]]
links = sys.argv[6:]
pull = {}
for line in open(pull_tsv):
    link, s = line.rstrip("\n").split("\t")
    pull.setdefault(link, []).append(float(s))
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
       "podman: podman 4.3 pull (enable_partial_images) + run of the same",
       "python with runc, own graphroot; `-` where podman or runc is missing.",
       "lazy: mounted with --no-fetch (only what is opened is fetched, so the",
       "bytes are what the first output needed); lazy, default: the default",
       "mount, its background completion running beside the python.", "",
       "| link | eager | lazy | lazy/eager | lazy, default mount | its /eager | podman | fetched eager | fetched lazy | stored eager | stored lazy |",
       "|---|---|---|---|---|---|---|---|---|---|---|"]
for link in links:
    e, l = statistics.median(t[(link, "eager")]), statistics.median(t[(link, "lazy")])
    ld = statistics.median(t[(link, "lazydef")])
    fe = statistics.median(x[0] for x in b[(link, "eager")])
    fl = statistics.median(x[0] for x in b[(link, "lazy")])
    se = statistics.median(x[1] for x in b[(link, "eager")])
    sl = statistics.median(x[1] for x in b[(link, "lazy")])
    p = t.get((link, "podman"))
    p = "%.2f s" % statistics.median(p) if p else "-"
    out.append("| %s | %.2f s | %.2f s | %.2f | %.2f s | %.2f | %s | %s | %s (%.0f%%) | %s | %s (%.0f%%) |" % (
        link, e, l, l / e, ld, ld / e, p, mib(fe), mib(fl), 100 * fl / image_bytes, mib(se), mib(sl),
        100 * sl / se))
out += ["", "Completion: `pull --lazy` then a plain `pull` (fetches and verifies the",
        "rest, no mount) against the eager `pull` alone (same runs as above).", "",
        "| link | eager pull | lazy pull + pull | ratio |", "|---|---|---|---|"]
for link in links:
    e, c = statistics.median(pull[link]), statistics.median(t[(link, "complete")])
    out.append("| %s | %.2f s | %.2f s | %.2f |" % (link, e, c, c / e))
print("\n".join(out))
PY
)
echo "$table"
[ "$write_results" = 1 ] && write_results_section "lazy pull" "$table"
exit 0
