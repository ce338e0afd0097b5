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
# The first pull's floor: the same rootfs written by `benchtool tree` in the
# shape of each format (no decompression, no hashing, data from memory), on
# the same file system, in the same runs.
# The layer-level peers, disk only, each in a fresh root of its own: podman
# (containers/storage, overlay driver) pulls the two images; containerd (its
# own daemon, overlayfs snapshotter) imports them with `ctr images import`
# (counted: its snapshots, plus its content store of compressed blobs).
#
# --fs ext4 (default) or --fs xfs puts the stores on a loop filesystem of
# that type made with its default options (ext4: 256-byte inodes, where a
# metadata-only entry's xattrs need a block of their own; xfs: 512-byte
# inodes, where they fit in the inode), made afresh for every pull and every
# floor measured: ext4's inode allocator slows down over inodes deleted in the
# last minutes (recently_deleted() in find_inode_bit: perf showed it on top),
# which an rm -rf of the previous run's store leaves by the thousand, so a
# reused filesystem times the previous run's deletions too (format 2, with more
# inodes, more so: 2.06x format 1 there against 1.2x on fresh ones). --fs host
# keeps the stores in a directory of bench/out, emptied between runs.
#
#   bench/sharing.sh [--runs N] [--fs ext4|xfs|host] [--no-results]
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

runs=3 fs=ext4
bench_args sharing.sh "fs" "$@"
case $fs in host|ext4|xfs) ;; *) die "sharing.sh: --fs: '$fs' is not host, ext4 or xfs" ;; esac
[ -f "$cache_dir/rootfs.complete" ] || bash "$bench_dir/images.sh"
bench_build || die "layerctl does not build"
layerctl=$BUILD/tools/layerctl
mkimage=$BUILD/tests/fixtures/mkimage
[ -x "$mkimage" ] || die "no $mkimage (build the tests)"
work=$out_dir/sharing-work
st=$work/st  # the stores, the peers' roots and the floor's trees
fs_img=$out_dir/sharing-$fs.img
for m in "$work"/mnt1 "$work"/mnt2 "$st"; do mountpoint -q "$m" && umount -l "$m"; done
rm -rf "$work"
mkdir -p "$work/mnt1" "$work/mnt2" "$st"
# fresh_fs: an empty filesystem (--fs host: an emptied directory) at $st.
fresh_fs() {
  if [ "$fs" = host ]; then
    rm -rf "${st:?}"/*
    return
  fi
  if mountpoint -q "$st"; then umount "$st"; fi
  rm -f "$fs_img"
  truncate -s 8G "$fs_img"
  "mkfs.$fs" -q "$fs_img" >/dev/null 2>&1 || "mkfs.$fs" -f -q "$fs_img" >/dev/null
  mount -o loop "$fs_img" "$st"
}
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  cg=/sys/fs/cgroup/bench-sharing-$$ key=file
else
  cg=/sys/fs/cgroup/memory/bench-sharing-$$ key=cache
fi
cleanup() {
  for m in "$work/mnt1" "$work/mnt2"; do mountpoint -q "$m" && umount -l "$m"; done
  [ -d "$cg" ] && rmdir "$cg" 2>/dev/null
  if [ -d "$st/podman" ]; then podman_store system reset -f >/dev/null 2>&1 || true; fi
  containerd_stop
  rm -rf "${st:?}"/*
  if mountpoint -q "$st"; then umount "$st"; fi
  rm -f "$fs_img"
  rm -rf "$work"
}
containerd_stop() {
  [ -n "${ctrd_pid:-}" ] || return 0
  kill "$ctrd_pid" 2>/dev/null || true
  wait "$ctrd_pid" 2>/dev/null || true  # its status is the SIGTERM
  ctrd_pid=
  { grep -o " $st/containerd/[^ ]*" /proc/self/mounts || true; } | sort -r | xargs -r -n1 umount -l
}
# OCI-archive tar of one tag of a layout (its index entry and the blobs it
# names), for ctr images import.
oci_tar() {  # LAYOUT TAG OUT
  python3 - "$@" <<'PY'
import io, json, os, sys, tarfile
layout, tag, out = sys.argv[1:4]
ix = json.load(open(os.path.join(layout, "index.json")))
ix["manifests"] = [m for m in ix["manifests"]
                   if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
blob = lambda d: os.path.join("blobs", *d.split(":"))
names = set()
for m in ix["manifests"]:
    names.add(blob(m["digest"]))
    man = json.load(open(os.path.join(layout, blob(m["digest"]))))
    names.update(blob(d["digest"]) for d in [man["config"]] + man["layers"])
with tarfile.open(out, "w") as t:
    t.add(os.path.join(layout, "oci-layout"), "oci-layout")
    data = json.dumps(ix).encode()
    info = tarfile.TarInfo("index.json")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
    for n in sorted(names):
        t.add(os.path.join(layout, n), n)
PY
}
podman_store() {
  podman --root "$st/podman/root" --runroot "$st/podman/run" --storage-driver overlay \
    --storage-opt overlay.mount_program= "$@"
}
trap cleanup EXIT

log "image 2: the rootfs as one layer, every mtime changed"
cp -a "$cache_dir/rootfs" "$work/rootfs2"
find "$work/rootfs2" -exec touch -h -d 2021-03-03 {} +
"$mkimage" --out "$work/img2" --format oci --tag latest --layer "$work/rootfs2" >/dev/null
rm -rf "$work/rootfs2"
img1="oci:$cache_dir/images/debian-gzip:latest" img2="oci:$work/img2:latest"

store_bytes() { du -s --block-size=1 "$1" | cut -f1; }
benchtool=$work/benchtool
cc -O2 -Wall -o "$benchtool" "$bench_dir/tools/benchtool.c"
declare -A t1 t2 d1 d2 pc tf
pd1="" pd2="" cd1="" cd2="" cb1="" cb2=""
for ((r = 1; r <= runs; r++)); do
  for fmt in 2 1; do
    fresh_fs
    root=$st/store-$fmt
    flags=(--drop-blobs)
    [ $fmt = 1 ] && flags+=(--inline-files)
    sync
    drop_caches
    s=$(now_us)
    "$layerctl" --root "$root" -q pull "${flags[@]}" "$img1" >/dev/null
    t1[$fmt]+="$(( $(now_us) - s )) "
    a=$(store_bytes "$root")
    sync
    drop_caches
    s=$(now_us)
    "$layerctl" --root "$root" -q pull "${flags[@]}" "$img2" >/dev/null
    t2[$fmt]+="$(( $(now_us) - s )) "
    b=$(store_bytes "$root")
    d1[$fmt]+="$a " d2[$fmt]+="$((b - a)) "
    # Page cache: the 100 largest .so files, read through image 1's mount,
    # then through image 2's, daemons and readers in one memory cgroup.
    mkdir -p "$cg"
    (
      echo $BASHPID >"$cg/cgroup.procs"
      "$layerctl" --root "$root" mount --read-only "$img1" "$work/mnt1" >/dev/null
      "$layerctl" --root "$root" mount --read-only "$img2" "$work/mnt2" >/dev/null
      # (awk, not head: head would end sort with SIGPIPE, fatal under pipefail)
      (cd "$work/mnt1" && find usr/lib -name '*.so*' -type f -printf '%s %p\n' | sort -rn |
        awk "NR <= 100" | cut -d" " -f2) >"$work/libs"
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
    # The floor of the first pull's file system work in this format's shape.
    fresh_fs
    sync
    drop_caches
    tf[$fmt]+="$("$benchtool" tree "$cache_dir/rootfs" "$st/tree" $fmt | sed -n 's/^seconds=\([0-9.]*\).*/\1/p') "
    rmdir "$cg" 2>/dev/null || true
    log "run $r format $fmt: first pull $(( $(echo ${t1[$fmt]} | awk '{print $NF}') / 1000 )) ms, second pull $(( $(echo ${t2[$fmt]} | awk '{print $NF}') / 1000 )) ms, tree floor $(echo ${tf[$fmt]} | awk '{print $NF}') s, image 1 $a B, image 2 adds $((b - a)) B, page cache +$(cat "$work/pc") B"
  done
done

# Peer: podman (containers/storage, overlay driver, its own fresh root).
if command -v podman >/dev/null; then
  for ((r = 1; r <= runs; r++)); do
    podman_store system reset -f >/dev/null 2>&1 || true
    fresh_fs
    mkdir -p "$st/podman"
    podman_store pull -q "$img1" >/dev/null
    a=$(store_bytes "$st/podman/root")
    podman_store pull -q "$img2" >/dev/null
    b=$(store_bytes "$st/podman/root")
    pd1+="$a " pd2+="$((b - a)) "
    log "run $r podman: image 1 $a B, image 2 adds $((b - a)) B"
  done
  podman_store system reset -f >/dev/null 2>&1 || true
  rm -rf "$st/podman"
fi

# Peer: containerd (overlayfs snapshotter, its own daemon and root).
if command -v containerd >/dev/null && command -v ctr >/dev/null; then
  oci_tar "$cache_dir/images/debian-gzip" latest "$work/img1.tar"
  oci_tar "$work/img2" latest "$work/img2.tar"
  c=$st/containerd
  for ((r = 1; r <= runs; r++)); do
    fresh_fs
    mkdir -p "$c"
    printf 'version = 2\n' >"$c/config.toml"
    containerd -c "$c/config.toml" --root "$c/root" --state "$c/state" --address "$c/sock" \
      >"$c.log" 2>&1 &
    ctrd_pid=$!
    for _ in $(seq 50); do [ -S "$c/sock" ] && break; sleep 0.1; done
    ctr_bytes() {
      du -s --block-size=1 "$c/root/io.containerd.snapshotter.v1.overlayfs" | cut -f1
      du -s --block-size=1 "$c/root/io.containerd.content.v1.content" | cut -f1
    }
    # Each under a name of its own: both tags are "latest", and an import
    # under the default name would replace image 1 (and let its layers go).
    ctr -a "$c/sock" -n bench images import --base-name docker.io/bench/img1 "$work/img1.tar" >/dev/null
    read -r a ab < <(ctr_bytes | paste -sd' ')
    ctr -a "$c/sock" -n bench images import --base-name docker.io/bench/img2 "$work/img2.tar" >/dev/null
    read -r b bb < <(ctr_bytes | paste -sd' ')
    cd1+="$a " cd2+="$((b - a)) " cb1+="$ab " cb2+="$((bb - ab)) "
    log "run $r containerd: image 1 $a B (+$ab B blobs), image 2 adds $((b - a)) B (+$((bb - ab)) B blobs)"
    containerd_stop
  done
  rm -rf "$c" "$work/img1.tar" "$work/img2.tar"
fi

# What image 2's tree costs at least, whatever the form: a file of up to the
# inline threshold (4 KiB) takes a data block; a larger one is a metadata-only
# entry, whose two xattrs take a block of their own where they do not fit in
# the inode (ext4's default 256-byte inodes; xfs's 512-byte ones hold them).
small_files=$(find "$cache_dir/rootfs" -type f -size +0 -size -4097c | wc -l)
large_files=$(find "$cache_dir/rootfs" -type f -size +4096c | wc -l)
block=$(stat -f -c %S "$st")

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
table="| store | first pull (image 1) | second pull (image 2) | image 1 on disk | image 2 adds | page cache, 100 libs via image 2 |
|---|---|---|---|---|---|"
for fmt in 2 1; do
  tp=$(median <<<"${t1[$fmt]}") tq=$(median <<<"${t2[$fmt]}") a=$(median <<<"${d1[$fmt]}")
  b=$(median <<<"${d2[$fmt]}") p=$(median <<<"${pc[$fmt]}")
  table+="
| format $fmt | $(awk -v u="$tp" 'BEGIN {printf "%.2f s", u / 1e6}') | $(awk -v u="$tq" 'BEGIN {printf "%.2f s", u / 1e6}') | $(mib "$a") | $(mib "$b") ($(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f%%", 100 * b / a}')) | $(mib "$p") |"
done
if [ -n "$pd1" ]; then
  a=$(median <<<"$pd1") b=$(median <<<"$pd2")
  table+="
| podman (c/storage overlay) | | | $(mib "$a") | $(mib "$b") ($(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f%%", 100 * b / a}')) | |"
fi
if [ -n "$cd1" ]; then
  a=$(median <<<"$cd1") b=$(median <<<"$cd2")
  table+="
| containerd (overlayfs snapshotter) | | | $(mib "$a") (+$(mib "$(median <<<"$cb1")") blobs) | $(mib "$b") ($(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.1f%%", 100 * b / a}'); +$(mib "$(median <<<"$cb2")") blobs) | |"
fi
f1=$(median <<<"${tf[1]}") f2=$(median <<<"${tf[2]}")
p1=$(median <<<"${t1[1]}") p2=$(median <<<"${t1[2]}")
table+="

First pull, format 2 against format 1: layerctl $(awk -v a="$p2" -v b="$p1" 'BEGIN {printf "%.2fx", a / b}') (runs: format 2 ${t1[2]% }; format 1 ${t1[1]% } us); the floor of the same trees' file system work (\`benchtool tree\`: each format's shape written from memory, no decompression or hashing, synced) $(awk -v a="$f2" -v b="$f1" 'BEGIN {printf "%.2fx (%.2f s against %.2f s)", a / b, a, b}'). Runs of the floor: format 2 ${tf[2]% }; format 1 ${tf[1]% }.

Filesystem of the stores: $([ "$fs" = host ] && echo "a directory on the host's ($(findmnt -no FSTYPE -T "$out_dir")), emptied between runs" || echo "a loop $fs made afresh (default mkfs options) for every pull and floor"). Image 2 has $small_files non-empty files of at most 4 KiB (inline, a $block-byte block each: $(mib $((small_files * block)))) and $large_files larger ones (metadata-only entries; where their xattrs need a block of their own: $(mib $((large_files * block))))."
echo "$table"
[ "$write_results" = 1 ] && write_results_section "sharing$([ "$fs" = ext4 ] || echo " ($fs)")" "$table"
exit 0
