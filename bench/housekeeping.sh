#!/usr/bin/env bash
# Store housekeeping benchmark (issue 6): what the file lists cost and what
# checking with them costs, on the Debian image bench/images.sh caches
# (debian-gzip:latest, 4 layers).
#
#   pull          `layerctl pull` into a fresh store, with the file list
#                 recorded (default) and with --no-file-list, alternating
#   fsck          `layerctl fsck` over that store (every file hashed and its
#                 metadata compared, blobs and records checked)
#   sha256sum     `find DIFFS -type f -print0 | xargs -0 sha256sum` over the
#                 same layer trees (content only)
#   find+sha256   the mtree-style check done with coreutils: `find -printf`
#                 of every entry's metadata, then sha256sum of every file
#                 (no mtree/gomtree package on Debian bookworm)
# Each check runs cold (after a cache drop) and warm. Medians of --runs
# (default 3). Writes the "## housekeeping" section of bench/RESULTS.md
# unless --no-results.
#
#   bench/housekeeping.sh [--runs N] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3
bench_args housekeeping.sh "" "$@"

mkdir -p "$out_dir"
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
img=$cache_dir/images/debian-gzip
[ -f "$img/index.json" ] || bash "$bench_dir/images.sh"
ref="oci:$img:latest"

work=$out_dir/housekeeping-work
rm -rf "$work"
mkdir -p "$work"
raw=$out_dir/housekeeping-raw.tsv
: >"$raw"

# timed NAME CMD...: runs CMD, appends "NAME<TAB>wall s<TAB>cpu s" (user +
# system of CMD and its children) to $raw.
timed() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >"$work/out.log" 2>&1 ||
    { cat "$work/out.log" >&2; die "$name failed"; }
  python3 -c "import sys; e, u, s = map(float, open('$work/time').read().split()[-3:]);
print('$name\t%.3f\t%.3f' % (e, u + s))" >>"$raw"
}
sha_tree() { find "$1"/layers/sha256/*/diff -type f -print0 | xargs -0 sha256sum >/dev/null; }
mtree_like() {
  find "$1"/layers/sha256/*/diff -printf '%P %y %m %U %G %s %T@ %l\n' >/dev/null
  sha_tree "$1"
}
export -f sha_tree mtree_like

# Input warm: the blobs are read once so that pulls time the unpack side.
cat "$img"/blobs/sha256/* >/dev/null
# Every pull goes into a store of its own and all are removed at the end:
# ext4 allocates inodes slowly right after many were deleted (its
# recently_deleted() check), which would tax whichever pull follows a removal.
for r in $(seq 1 "$runs"); do
  log "run $r/$runs"
  # Alternate which pull goes first.
  if [ $((r % 2)) -eq 1 ]; then order="with without"; else order="without with"; fi
  for o in $order; do
    drop_caches
    if [ "$o" = with ]; then
      timed "pull with file list" "$layerctl" --root "$work/store-with-$r" pull -q "$ref"
    else
      timed "pull without file list" "$layerctl" --root "$work/store-without-$r" pull -q \
        --no-file-list "$ref"
    fi
  done
  store=$work/store-with-$r
  for mode in cold warm; do
    for tool in fsck sha256sum find+sha256; do
      [ "$mode" = cold ] && drop_caches
      [ "$mode" = warm ] && sha_tree "$store"  # warm the page cache
      case $tool in
        fsck) timed "$tool $mode" "$layerctl" --root "$store" fsck -q ;;
        sha256sum) timed "$tool $mode" bash -c 'sha_tree "$0"' "$store" ;;
        find+sha256) timed "$tool $mode" bash -c 'mtree_like "$0"' "$store" ;;
      esac
    done
  done
done
ln -sfn "store-with-$runs" "$work/store"

# Sizes: the layers' trees, their file lists, the number of entries.
sizes=$("$layerctl" --root "$work/store" --json fsck | python3 -c '
import json, sys; j = json.load(sys.stdin); print(j["files"], j["hashed_bytes"])')
lists=$(du -cB1 "$work"/store/layers/sha256/*/files.json.zst | tail -1 | cut -f1)
trees=$(du -scB1 "$work"/store/layers/sha256/*/diff | tail -1 | cut -f1)

table=$(python3 - "$raw" "$sizes" "$lists" "$trees" "$runs" <<'PY'
import sys, statistics, collections
raw, sizes, lists, trees, runs = sys.argv[1:6]
files, hashed = (int(x) for x in sizes.split())
v = collections.defaultdict(list)
c = collections.defaultdict(list)
for line in open(raw):
    k, t, cpu = line.rstrip("\n").split("\t")
    v[k].append(float(t))
    c[k].append(float(cpu))
med = {k: statistics.median(x) for k, x in v.items()}
cmed = {k: statistics.median(x) for k, x in c.items()}
out = ["| what | median wall s | runs wall s | median CPU s (user+sys) |", "|---|---:|---|---:|"]
for k in ["pull with file list", "pull without file list",
          "fsck cold", "sha256sum cold", "find+sha256 cold",
          "fsck warm", "sha256sum warm", "find+sha256 warm"]:
    if k in v:
        out.append("| %s | %.2f | %s | %.2f |" % (k, med[k], " ".join("%.2f" % x for x in v[k]), cmed[k]))
out.append("")
w, wo = med.get("pull with file list"), med.get("pull without file list")
if w and wo:
    cw, cwo = cmed["pull with file list"], cmed["pull without file list"]
    out.append("- Recording the file list: pull wall time %+.1f%% (%.2f s vs %.2f s), "
               "CPU time %+.1f%% (%.2f s vs %.2f s)." %
               (100 * (w - wo) / wo, w, wo, 100 * (cw - cwo) / cwo, cw, cwo))
for mode in ("cold", "warm"):
    f, s, m = med.get("fsck " + mode), med.get("sha256sum " + mode), med.get("find+sha256 " + mode)
    if f and s and m:
        out.append("- fsck %s: %.2fx the wall time of sha256sum over the same trees, %.2fx "
                   "find+sha256 (CPU: %.2fx, %.2fx)." %
                   (mode, f / s, f / m, cmed["fsck " + mode] / cmed["sha256sum " + mode],
                    cmed["fsck " + mode] / cmed["find+sha256 " + mode]))
out.append("- The image: %d entries in 4 layers, %.0f MiB hashed by fsck (file data and blobs); "
           "the trees take %.0f MiB on disk, their file lists %.0f KiB (zstd JSON, %.2f%%)." %
           (files, hashed / 2**20, int(trees) / 2**20, int(lists) / 2**10, 100 * int(lists) / int(trees)))
print("\n".join(out))
PY
)
echo "$table"
if [ "$write_results" = 1 ]; then
  write_results_section housekeeping "Measured by \`bench/housekeeping.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC') $(uname -r), $(nproc) cores, median of $runs runs). Image: debian-gzip:latest from \`bench/images.sh\`. fsck and both coreutils checks read every file of the same four layer trees, single-threaded; fsck also compares each entry's metadata and xattrs against the file list and checks the blobs and records. Cold = after \`drop_caches\`.

$table"
fi
rm -rf "$work"/store*
