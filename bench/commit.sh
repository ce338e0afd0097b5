#!/usr/bin/env bash
# Commit + push benchmark (issue 6 "Changes back to images"): a container of a
# small synthetic base image (pulled from a local CNCF registry) gets ~100 MiB
# of changes (100 new 1 MiB files, half random and half text; a lower
# directory deleted, another renamed), then its changes become an image and
# go to the registry:
#   layerctl       `layerctl commit C IMG` + `layerctl push IMG REF` (gzip)
#   layerctl-zstd  the same with `commit --compression zstd`
#   podman         `podman commit C IMG` + `podman push IMG REF` (overlay driver)
#   umoci+skopeo   `umoci repack` of an unpacked bundle + `skopeo copy oci:... docker://...`
# The changes are applied before the clock starts (layerctl: through the
# mount, then unmounted; podman: `podman mount`; umoci: the bundle's rootfs);
# each push goes to a new repository on the registry that has the base
# image, so only the new layer and config travel. Engines alternate inside
# each run; medians of N runs; warm caches. Writes the table to
# bench/RESULTS.md under "## commit".
#
#   bench/commit.sh [--runs N] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3
bench_args commit.sh "" "$@"

need_commands podman skopeo umoci docker-registry curl
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
export LAYERFS=$BUILD/fuse/layerfs
mkimage=${MKIMAGE:-}
if [ -z "$mkimage" ]; then
  for m in "$BUILD/tests/fixtures/mkimage" "$repo_dir/build/tests/fixtures/mkimage"; do
    [ -x "$m" ] && { mkimage=$m; break; }
  done
fi
[ -n "$mkimage" ] || die "mkimage not built (set MKIMAGE or build the tests)"
mkdir -p "$out_dir"
work=$out_dir/commit-work
reg_pid=
mounted=
cleanup() {
  [ -n "$mounted" ] && { "$layerctl" --root "$work/lc" umount "$mounted" >/dev/null 2>&1 || umount -l "$mounted" 2>/dev/null || true; }
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && { wait "$reg_pid" 2>/dev/null || true; }
  podman --root "$work/pd" --runroot "$work/pd-run" --storage-driver overlay rm -af >/dev/null 2>&1 || true
  podman --root "$work/pd" --runroot "$work/pd-run" --storage-driver overlay unshare true >/dev/null 2>&1 || true
  umount -R "$work/pd/overlay" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
mkdir -p "$work"

# The registry.
start_registry "$work"

# The base image (~20 MiB) and the changes (~100 MiB).
log "building the base image and the change set"
b=$work/base
for d in $(seq 0 9); do
  mkdir -p "$b/usr/lib/d$d" "$b/usr/share/doc/p$d"
  for f in $(seq 0 19); do
    head -c 65536 /dev/urandom >"$b/usr/lib/d$d/lib$f.so"
    seq 1 3000 >"$b/usr/share/doc/p$d/README$f"
  done
done
mkdir -p "$b/etc" "$b/bin"
echo base >"$b/etc/os-release"
"$mkimage" --out "$work/oci" --format oci --tag base --layer "$b" >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:base" "docker://$R/bench/base:1"
ch=$work/changes
mkdir -p "$ch/srv/data"
seq 1 100000 >"$work/text"
for f in $(seq 0 99); do
  { head -c 524288 /dev/urandom; head -c 524288 "$work/text"; } >"$ch/srv/data/f$f.bin"
done
change_mb=$(du -sm "$ch" | cut -f1)
apply_changes() {  # DIR
  cp -a "$ch/." "$1/"
  rm -rf "$1/usr/lib/d0"
  mv "$1/usr/share/doc" "$1/usr/share/doc-renamed"
  sync
}

# Each engine's store, with the base image pulled once (not timed).
"$layerctl" --root "$work/lc" pull -q "$R/bench/base:1" >/dev/null
PD=(podman --root "$work/pd" --runroot "$work/pd-run" --storage-driver overlay)
"${PD[@]}" pull -q --tls-verify=false "$R/bench/base:1" >/dev/null
skopeo copy -q --src-tls-verify=false "docker://$R/bench/base:1" "oci:$work/um:base"

# run_one ENGINE RUN -> "commit_s push_s blob_mb", or "fail".
run_one() {
  local e=$1 run=$2 ref=$R/bench/${1//+/-}:$2 t0 t1 t2 mb=""
  case $e in
    layerctl|layerctl-zstd)
      local m=$work/mnt comp=gzip
      [ "$e" = layerctl-zstd ] && comp=zstd
      mkdir -p "$m"
      "$layerctl" --root "$work/lc" mount --name "c-$e-$run" "$R/bench/base:1" "$m" >/dev/null || return 1
      mounted=$m
      apply_changes "$m"
      "$layerctl" --root "$work/lc" umount "$m" >/dev/null || return 1
      mounted=
      t0=$(now_us)
      "$layerctl" --root "$work/lc" --json commit --compression "$comp" "c-$e-$run" "$ref" >"$work/commit.json" || return 1
      t1=$(now_us)
      "$layerctl" --root "$work/lc" -q push "$ref" "$ref" >/dev/null || return 1
      t2=$(now_us)
      mb=$(python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["layer"]["size"] / 1048576))' "$work/commit.json")
      "$layerctl" --root "$work/lc" rm "c-$e-$run" >/dev/null
      "$layerctl" --root "$work/lc" rmi "$ref" >/dev/null ;;
    podman)
      local c mnt
      c=$("${PD[@]}" create -q "$R/bench/base:1" true) || return 1
      mnt=$("${PD[@]}" mount "$c") || return 1
      apply_changes "$mnt"
      "${PD[@]}" umount "$c" >/dev/null
      t0=$(now_us)
      "${PD[@]}" commit -q "$c" "$ref" >/dev/null || return 1
      t1=$(now_us)
      "${PD[@]}" push -q --tls-verify=false "$ref" >/dev/null || return 1
      t2=$(now_us)
      mb=$(curl -s -H "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" \
        "http://$R/v2/bench/${e//+/-}/manifests/$run" | python3 -c 'import json,sys; print("%.1f" % (json.load(sys.stdin)["layers"][-1]["size"] / 1048576))')
      "${PD[@]}" rm -f "$c" >/dev/null
      "${PD[@]}" rmi -f "$ref" >/dev/null ;;
    umoci+skopeo)
      local bundle=$work/bundle
      rm -rf "$bundle"
      umoci unpack --image "$work/um:base" "$bundle" >/dev/null || return 1
      apply_changes "$bundle/rootfs"
      t0=$(now_us)
      umoci repack --image "$work/um:r$run" "$bundle" >/dev/null || return 1
      t1=$(now_us)
      skopeo copy -q --dest-tls-verify=false "oci:$work/um:r$run" "docker://$ref" >/dev/null || return 1
      t2=$(now_us)
      mb=$(curl -s -H "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" \
        "http://$R/v2/bench/${e//+/-}/manifests/$run" | python3 -c 'import json,sys; print("%.1f" % (json.load(sys.stdin)["layers"][-1]["size"] / 1048576))')
      rm -rf "$bundle" ;;
  esac
  awk -v a="$t0" -v b="$t1" -v c="$t2" -v mb="$mb" 'BEGIN { printf "%.2f %.2f %s\n", (b - a) / 1e6, (c - b) / 1e6, mb }'
}

engines=(layerctl layerctl-zstd podman umoci+skopeo)
raw=$out_dir/commit-raw.tsv
printf 'engine\trun\tcommit_s\tpush_s\tblob_mb\n' >"$raw"
for run in $(seq "$runs"); do
  n=${#engines[@]}
  for i in $(seq 0 $((n - 1))); do
    e=${engines[$(( (i + run) % n ))]}
    if r=$(run_one "$e" "$run"); then
      read -r c p mb <<<"$r"
      log "run $run: $e commit ${c}s push ${p}s (layer ${mb} MiB)"
      printf '%s\t%s\t%s\t%s\t%s\n' "$e" "$run" "$c" "$p" "$mb" >>"$raw"
    else
      log "run $run: $e failed"
      printf '%s\t%s\tfail\tfail\t\n' "$e" "$run" >>"$raw"
    fi
  done
done

table=$(python3 - "$raw" "$runs" "$change_mb" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]).readlines()[1:]]
runs, change_mb = sys.argv[2], sys.argv[3]
t = collections.defaultdict(list)
mb = {}
fails = collections.Counter()
for e, run, c, p, m in rows:
    if c == "fail":
        fails[e] += 1
        continue
    t[e].append((float(c), float(p)))
    mb[e] = m
out = ["Container of a ~20 MiB base image with %s MiB of changes (100 x 1 MiB files, half random, half "
       "text; one lower dir deleted, one renamed); registry: docker-registry 2.8 on 127.0.0.1, plain "
       "HTTP, base image already there. Median of %s runs, engines alternating, warm caches; seconds "
       "(wall clock). Ratio: layerctl's total (gzip) over the engine's total." % (change_mb, runs), "",
       "| engine | layer MiB | commit s | push s | total s | totals of the runs (s) | layerctl (gzip) takes |",
       "|---|---|---|---|---|---|---|"]
med = {}
for e in ("layerctl", "layerctl-zstd", "podman", "umoci+skopeo"):
    v = t.get(e)
    if not v:
        if fails[e]:
            out.append("| %s | | failed | | | | |" % e)
        continue
    c = statistics.median(x[0] for x in v)
    p = statistics.median(x[1] for x in v)
    tot = statistics.median(x[0] + x[1] for x in v)
    med[e] = tot
    ratio = "" if e == "layerctl" or "layerctl" not in med else "%.2fx its time" % (med["layerctl"] / tot)
    out.append("| %s | %s | %.2f | %.2f | %.2f | %s | %s |" % (
        e, mb.get(e, "?"), c, p, tot, " ".join("%.1f" % (x[0] + x[1]) for x in v)
        + (" (%d failed)" % fails[e] if fails[e] else ""), ratio))
print("\n".join(out))
PY
)
echo "$table"
if [ "$write_results" = 1 ]; then
  write_results_section commit "Measured by \`bench/commit.sh\` ($(date -u +%Y-%m-%d) $(uname -r), $(nproc) cores).

$table"
fi
