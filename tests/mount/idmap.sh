#!/usr/bin/env bash
# uidmapping/gidmapping go the way fuse-overlayfs takes them (issue 18):
# "DISK:MOUNT:COUNT[:DISK:MOUNT:COUNT...]", so uidmapping=0:1000:1 shows an
# on-disk uid 0 as 1000, and an id written through the mount (create,
# chown) is stored mapped back. Differential against the fuse-overlayfs
# binary with the same options: the owners every lower file shows, and the
# owners stored in the upper after create, mkdir, symlink and chown.
set -euo pipefail
source "$(dirname "$0")/lib.sh" idmap
command -v fuse-overlayfs >/dev/null || { echo "no fuse-overlayfs (.ci/install-deps)"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$t/l" "$t/mnt"
for id in 0 5 1000 1001 100000 100005 165535; do
  echo "$id" >"$t/l/f$id"
  chown "$id:$id" "$t/l/f$id"
done

# run ENGINE MAPPING: what the mount shows and what the upper stores
run() {
  local engine=$1 map=$2 m=$t/mnt
  rm -rf "$t/u" "$t/w"
  mkdir -p "$t/u" "$t/w"
  local o="lowerdir=$t/l,upperdir=$t/u,workdir=$t/w,uidmapping=$map,gidmapping=$map"
  if [ "$engine" = layerfs ]; then
    "$LAYERFS" -o "$o" "$m"
  else
    fuse-overlayfs -o "$o" "$m" 2>/dev/null
  fi
  (cd "$m" && for f in f*; do echo "show $f $(stat -c %u:%g "$f")"; done)
  touch "$m/new"
  mkdir "$m/newdir"
  ln -s target "$m/newlink"
  for id in 0 5 1000 1001 100000 100001; do
    touch "$m/c$id"
    chown "$id:$id" "$m/c$id" 2>/dev/null || echo "chown $id refused"
  done
  chown 1000:1000 "$m/f0"
  (cd "$m" && for f in new newdir newlink c*; do echo "show $f $(stat -c %u:%g "$f")"; done)
  umount "$m"
  (cd "$t/u" && for f in new newdir newlink c* f0; do echo "disk $f $(stat -c %u:%g "$f")"; done)
}

for map in 0:1000:1 0:1000:1:1:100000:65536 1000:0:1 0:100000:65536; do
  want=$(run fuse-overlayfs "$map")
  got=$(run layerfs "$map")
  if [ "$got" != "$want" ]; then
    diff <(echo "$want") <(echo "$got") | sed 's/^</  fuse-overlayfs:/; s/^>/  layerfs:       /' || true
    fail "mapping $map: layerfs differs from fuse-overlayfs"
  fi
  echo "ok: mapping $map"
done
