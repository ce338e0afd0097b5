#!/usr/bin/env bash
# rmi refuses an image a container uses (mounted or not), and removes it once
# the container is gone. Needs FUSE (layerctl mount runs the layerfs daemon).
set -euo pipefail
[ -c /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
. "$(dirname "$0")/lib.sh"
make_trees
"$MKIMAGE" --out "$T/oci" --format oci --tag t --layer "$T/base" --layer "$T/app1"
lc pull "oci:$T/oci:t" >/dev/null
mkdir "$T/mnt"
trap 'lc umount "$T/mnt" >/dev/null 2>&1 || umount -l "$T/mnt" 2>/dev/null || true; rm -rf "$T"' EXIT
lc mount --name rmitest "oci:$T/oci:t" "$T/mnt" >/dev/null
[ "$(cat "$T/mnt/srv/app")" = "app one" ] || fail "mount does not show the image"
expect_fail_line "used by container" lc rmi "oci:$T/oci:t"
expect_contains "$LAST_ERR" "oci:$T/oci:t"
[ "$(layer_count)" -eq 2 ] || fail "rmi removed layers of a mounted image"
lc umount "$T/mnt" >/dev/null
# Stopped but not removed: still in use.
expect_fail_line "used by container" lc rmi "oci:$T/oci:t"
lc rm rmitest >/dev/null
out=$(lc rmi "oci:$T/oci:t")
expect_contains "$out" "Untagged: oci:$T/oci:t"
[ "$(layer_count)" -eq 0 ] || fail "layers left after rmi"
echo ok
