#!/usr/bin/env bash
# Builds and caches the benchmark images under bench/cache/ (reused when
# present; `--force` rebuilds the layers and layouts, `--force-rootfs` also the
# debootstrap rootfs). Run as root on Debian bookworm.
#
#   rootfs/          debootstrap --variant=minbase bookworm + python3, perl, git,
#                    curl... (~300 MB)
#   tars/L0..L4.tar  the layers, GNU tar (PAX, --xattrs, --numeric-owner,
#                    sorted lists):
#                      L0 base system (all but /usr/lib and python)
#                      L1 /usr/lib (shared libraries, perl, git-core...)
#                      L2 python3 (stdlib, interpreter, docs)
#                      L3 small top layer: changed files, 4 whiteouts, an opaque dir
#                      L4 one 1 GiB file /data/big.bin (see tools/layers.py)
#   images/debian-gzip, debian-zstd, debian-tar   OCI layouts, tags:
#                      latest = L0..L3, big = L0..L4, layerN = layer N alone
#   images/debian-big  OCI layout (gzip), latest = L0..L4
#   images/*.json      layer digests, diff_ids and sizes per compression
#   layers/L0..L4      the layers unpacked with GNU tar, whiteouts converted to
#                      the overlay format (for overlay benchmarks without a store)
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

force=0 force_rootfs=0
for a in "$@"; do
  case $a in
    --force) force=1 ;;
    --force-rootfs) force=1 force_rootfs=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "images.sh: unknown argument '$a'" ;;
  esac
done
images_version=1
big_mib=${BENCH_BIG_MIB:-1024}

bench_install_deps
mkdir -p "$cache_dir"
cd "$cache_dir"

# The Debian mirror this machine's apt uses (deb822 or one-line sources).
mirror() {
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i} /^deb / {print ($2 ~ /^\[/ ? $3 : $2)}' |
      grep -E '/debian/?$' | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# Unmounts everything mounted at or below each DIR, deepest first. debootstrap
# can leave /proc (and /sys, devpts) mounted inside its target when it fails or
# is interrupted; `rm -rf` would then descend into the host's /proc and /sys.
unmount_below() {
  local d real m
  for d in "$@"; do
    [ -e "$d" ] || continue
    real=$(realpath -e "$d")
    # mountinfo field 5 is the mount point (octal escapes for spaces etc.).
    awk -v r="$real" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo |
      sort -r | while read -r m; do
        m=$(printf '%b' "$m")
        umount "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount $m"
      done
  done
}

# 1. rootfs
if [ $force_rootfs -eq 1 ]; then unmount_below rootfs rootfs.tmp; rm -rf rootfs rootfs.complete; fi
if [ ! -f rootfs.complete ]; then
  unmount_below rootfs rootfs.tmp
  rm -rf rootfs rootfs.tmp
  m=$(mirror)
  log "debootstrap bookworm from $m (a few minutes)"
  debootstrap --variant=minbase \
    --include=python3,perl,git,curl,ca-certificates,procps,less,openssl \
    bookworm rootfs.tmp "$m" >debootstrap.log 2>&1 || {
    tail -n 20 debootstrap.log
    unmount_below rootfs.tmp
    die "debootstrap failed"
  }
  unmount_below rootfs.tmp
  rm -rf rootfs.tmp/var/cache/apt/archives/*.deb rootfs.tmp/var/lib/apt/lists/*_Packages
  mv rootfs.tmp rootfs
  touch rootfs.complete
fi

if [ $force -eq 0 ] && [ "$(cat images/.version 2>/dev/null)" = "$images_version" ] &&
   [ -f layers/.complete ]; then
  log "images cached in $cache_dir/images (--force rebuilds)"
  exit 0
fi
rm -rf tars images layers top big

# 2. layer tars
mkdir -p tars
tar_create() {  # OUT DIR LIST
  tar --create --file="$1" --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --numeric-owner --xattrs --xattrs-include='*' \
    --directory="$2" --null --no-recursion --files-from="$3"
}
log "splitting the rootfs into layers"
python3 "$bench_dir/tools/layers.py" split rootfs tars
python3 "$bench_dir/tools/layers.py" top rootfs top
python3 "$bench_dir/tools/layers.py" list top tars/L3.list
log "writing the ${big_mib} MiB file"
python3 "$bench_dir/tools/layers.py" big big "$big_mib"
python3 "$bench_dir/tools/layers.py" list big tars/L4.list
for i in 0 1 2; do tar_create tars/L$i.tar rootfs tars/L$i.list; done
tar_create tars/L3.tar top tars/L3.list
tar_create tars/L4.tar big tars/L4.list
rm -rf top big

# 3. OCI layouts
mkdir -p images.tmp
layer_args=()
for i in 0 1 2 3 4; do layer_args+=(--layer "L$i=$cache_dir/tars/L$i.tar"); done
tag_args=(--tag latest=L0,L1,L2,L3 --tag big=L0,L1,L2,L3,L4)
for i in 0 1 2 3 4; do tag_args+=(--tag "layer$i=L$i"); done
for c in gzip zstd none; do
  name=$c; [ $c = none ] && name=tar
  log "OCI layout debian-$name"
  python3 "$bench_dir/tools/ocilayout.py" --out "images.tmp/debian-$name" --compression $c \
    "${layer_args[@]}" "${tag_args[@]}" --info "images.tmp/debian-$name.json"
done
python3 "$bench_dir/tools/ocilayout.py" --out images.tmp/debian-big --compression gzip \
  "${layer_args[@]}" --tag latest=L0,L1,L2,L3,L4
echo $images_version >images.tmp/.version
mv images.tmp images

# 4. the layers unpacked, overlay format
log "unpacking the layers to $cache_dir/layers"
mkdir -p layers.tmp
for i in 0 1 2 3 4; do
  mkdir layers.tmp/L$i
  tar --extract --file=tars/L$i.tar --directory=layers.tmp/L$i --numeric-owner \
    --same-permissions --xattrs --xattrs-include='*'
  python3 "$bench_dir/tools/layers.py" whiteouts layers.tmp/L$i
done
touch layers.tmp/.complete
mv layers.tmp layers

du -sh rootfs tars/* images/* 2>/dev/null | sed 's/^/  /' >&2
log "done: $cache_dir/images"
