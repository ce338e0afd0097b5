#!/usr/bin/env bash
# Registry pull benchmark (issue 3 "Benchmark"): the Debian images of
# bench/images.sh (bookworm minbase + python3 etc.: layers L0..L3, gzip and
# zstd variants) are pushed to a local CNCF registry (docker-registry on
# 127.0.0.1, plain HTTP), then pulled into a fresh storage root per run by
#   layerctl   `layerctl --root FRESH pull REF`
#   skopeo+umoci  `skopeo copy docker://REF oci:FRESH` + `umoci unpack` (gzip only:
#              umoci 0.4.7 has no zstd)
#   podman     `podman --root FRESH --storage-driver overlay pull --tls-verify=false REF`
#   baseline   every layer blob read from the registry with curl and decompressed
#              (gzip -dc / zstd -dc) to /dev/null, all layers at once
# Tools alternate inside each run (the order rotates); before every timed
# command: fresh root, sync, caches dropped, the registry's blobs read once
# (input warm, output cold). Medians of N runs. Writes the table to
# bench/RESULTS.md under "## pull".
#
#   bench/pull.sh [--runs N] [--images gzip,zstd] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 images=gzip,zstd
bench_args pull.sh "images" "$@"

bench_install_deps
missing=()
for p in podman skopeo umoci docker-registry curl zstd gzip; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
systemctl disable --now docker-registry >/dev/null 2>&1 || true
bash "$bench_dir/images.sh"
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
mkdir -p "$out_dir"
work=$out_dir/pull-work
rm -rf "$work"
mkdir -p "$work"
reg_pid=
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && { wait "$reg_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

# The registry, with both images pushed once.
start_registry "$work"
IFS=, read -r -a image_list <<<"$images"
# Pushed through the distribution API as they are: skopeo would substitute
# blobs it already pushed with another compression (same diff_ids), which
# would turn the zstd image into the gzip one.
for img in "${image_list[@]}"; do
  python3 "$repo_dir/tests/registry/push.py" "$cache_dir/images/debian-$img" latest "http://$R" \
    "bench/debian:$img" >/dev/null || die "push debian-$img"
  curl -s -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$R/v2/bench/debian/manifests/$img" |
    grep -q "tar+$img" || die "the $img image in the registry does not have $img layers"
done

layer_digests() {  # IMAGE -> digests of L0..L3
  python3 - "$cache_dir/images/debian-$1.json" <<'PY'
import json, sys
for l in json.load(open(sys.argv[1]))["layers"]:
    if l["name"] in ("L0", "L1", "L2", "L3"):
        print(l["digest"])
PY
}
image_mb() {  # IMAGE -> compressed MB of L0..L3
  python3 - "$cache_dir/images/debian-$1.json" <<'PY'
import json, sys
print("%.0f" % (sum(l["size"] for l in json.load(open(sys.argv[1]))["layers"]
                    if l["name"] in ("L0", "L1", "L2", "L3")) / 1e6))
PY
}

warm_registry() { find "$work/registry" -type f -name data -exec cat {} + >/dev/null; }

# run_one TOOL IMAGE -> prints seconds; nothing when the tool does not apply.
run_one() {
  local tool=$1 img=$2 ref=$R/bench/debian:$2 root=$work/root t0 t1 d
  case $tool in
    skopeo+umoci) [ "$img" = gzip ] || return 0 ;;
  esac
  rm -rf "$root"
  mkdir -p "$root"
  sync
  drop_caches
  warm_registry
  t0=$(now_us)
  case $tool in
    layerctl)
      "$layerctl" --root "$root/store" pull -q "$ref" >"$work/out.log" 2>&1 ;;
    skopeo+umoci)
      skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$root/oci:img" >"$work/out.log" 2>&1 &&
        umoci unpack --image "$root/oci:img" "$root/bundle" >>"$work/out.log" 2>&1 ;;
    podman)
      podman --root "$root/podman" --runroot "$root/run" --storage-driver overlay \
        pull -q --tls-verify=false "$ref" >"$work/out.log" 2>&1 ;;
    baseline)
      : >"$work/out.log"
      local pids=() dec=zstd
      [ "$img" = gzip ] && dec=gzip
      for d in $(layer_digests "$img"); do
        (set -o pipefail; curl -sf "http://$R/v2/bench/debian/blobs/$d" | $dec -dc >/dev/null) &
        pids+=($!)
      done
      local ok=0
      for d in "${pids[@]}"; do wait "$d" || ok=1; done
      [ $ok -eq 0 ] ;;
  esac || { log "$tool $img failed"; echo fail; return 0; }
  t1=$(now_us)
  bench_seconds "$t0" "$t1"
}

raw=$out_dir/pull-raw.tsv
printf 'image\ttool\trun\tseconds\n' >"$raw"
for img in "${image_list[@]}"; do
  bench_rounds "$raw" "$runs" "layerctl skopeo+umoci podman baseline" "$img"
done

# Medians, ratios and the issue's targets.
table=$(python3 - "$raw" "$runs" "$(for i in "${image_list[@]}"; do echo "$i=$(image_mb "$i")"; done)" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]).readlines()[1:]]
runs = sys.argv[2]
mb = dict(x.split("=") for x in sys.argv[3].split())
t = collections.defaultdict(list)
fails = collections.Counter()
for img, tool, run, s in rows:
    if s == "fail":
        fails[(img, tool)] += 1
    else:
        t[(img, tool)].append(float(s))
med = {k: statistics.median(v) for k, v in t.items()}
out = []
out.append("Image: Debian bookworm minbase + python3, perl, git, curl (bench/images.sh), layers L0..L3; "
           "registry: docker-registry 2.8 on 127.0.0.1, plain HTTP. Fresh storage root per run; "
           "median of %s runs, tools alternating; seconds (wall clock)." % runs)
out.append("")
out.append("| image | compressed | tool | median s | runs (s) | layerctl is |")
out.append("|---|---|---|---|---|---|")
for img in sorted({k[0] for k in list(t) + list(fails)}):
    base = med.get((img, "layerctl"))
    for tool in ("layerctl", "skopeo+umoci", "podman", "baseline"):
        v = t.get((img, tool))
        if not v and not fails[(img, tool)]:
            continue
        m = med.get((img, tool))
        ratio = "" if tool == "layerctl" or not (m and base) else "%.2fx its time" % (base / m)
        runs_s = " ".join("%.1f" % x for x in v) + (" (%d failed)" % fails[(img, tool)] if fails[(img, tool)] else "")
        out.append("| %s | %s MB | %s | %s | %s | %s |" % (img, mb.get(img, "?"), tool,
                   "%.2f" % m if m else "n/a", runs_s, ratio))
out.append("")
def r(img, tool):
    a, b = med.get((img, "layerctl")), med.get((img, tool))
    return None if not (a and b) else a / b
lines = []
for tool in ("skopeo+umoci", "podman"):
    x = r("gzip", tool)
    if x is not None:
        lines.append("- gzip, target < 0.5x of %s: layerctl takes %.2fx its time: %s" %
                     (tool, x, "met" if x < 0.5 else "NOT met"))
x = r("zstd", "baseline")
if x is not None:
    lines.append("- zstd, target <= 1.5x of the baseline (curl + zstd -dc, all layers at once): "
                 "layerctl takes %.2fx: %s" % (x, "met" if x <= 1.5 else "NOT met"))
x = r("zstd", "podman")
if x is not None:
    lines.append("- zstd vs podman: layerctl takes %.2fx its time" % x)
out.append("Targets (issue 3):")
out.extend(lines)
print("\n".join(out))
PY
)
echo "$table"
if [ "$write_results" = 1 ]; then
  write_results_section pull "Measured by \`bench/pull.sh\` ($(date -u +%Y-%m-%d) $(uname -r), $(nproc) cores).

$table"
fi
