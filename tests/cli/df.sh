#!/usr/bin/env bash
# df: per image and per container shared/own bytes, the store total and the
# saving from sharing, all equal to what du says about the same directories.
# Needs FUSE for the container (layerctl mount runs the layerfs daemon).
set -euo pipefail
[ -c /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
. "$(dirname "$0")/lib.sh"
make_trees
ln "$T/base/bin/blob" "$T/base/bin/blob-hardlink"
"$MKIMAGE" --out "$T/oci" --format oci --tag one --layer "$T/base" --layer "$T/app1"
"$MKIMAGE" --out "$T/oci" --format oci --tag two --layer "$T/base" --layer "$T/app2"
# Every file inline (no content objects): the per-layer figures below are
# what du says of each layer directory. Objects are counted in unit/store.
lc pull --inline-files "oci:$T/oci:one" >/dev/null
lc pull --inline-files "oci:$T/oci:two" >/dev/null
mkdir "$T/mnt"
trap 'lc umount "$T/mnt" >/dev/null 2>&1 || umount -l "$T/mnt" 2>/dev/null || true; rm -rf "$T"' EXIT
lc mount --name dftest "oci:$T/oci:one" "$T/mnt" >/dev/null
head -c 500000 /dev/urandom >"$T/mnt/written"
lc umount "$T/mnt" >/dev/null

L=$STORE/layers/sha256
base=$(dirname "$(layer_dir "oci:$T/oci:one" 0)")
app1=$(dirname "$(layer_dir "oci:$T/oci:one" 1)")
app2=$(dirname "$(layer_dir "oci:$T/oci:two" 1)")
du1() { du -sB1 -c "$@" | tail -1 | cut -f1; }
j=$(lc --json df)
img() { echo "$j" | py "[i['$2'] for i in j['images'] if i['name'] == '$1'][0]"; }
[ "$(img "oci:$T/oci:one" shared)" = "$(du1 "$base")" ] || fail "one shared: $(img "oci:$T/oci:one" shared) vs du $(du1 "$base")"
[ "$(img "oci:$T/oci:one" own)" = "$(du1 "$app1")" ] || fail "one own"
[ "$(img "oci:$T/oci:two" shared)" = "$(du1 "$base")" ] || fail "two shared"
[ "$(img "oci:$T/oci:two" own)" = "$(du1 "$app2")" ] || fail "two own"
cdir=$(ls -d "$STORE"/containers/*)
[ "$(echo "$j" | py "j['containers'][0]['own']")" = "$(du1 "$cdir")" ] || fail "container own vs du"
[ "$(echo "$j" | py "j['containers'][0]['shared']")" = "$(du1 "$base" "$app1")" ] || fail "container shared"
[ "$(echo "$j" | py "j['containers'][0]['own'] > 500000")" = True ] || fail "container upper not counted"
[ "$(echo "$j" | py "j['total']")" = "$(du1 "$STORE")" ] || fail "total $(echo "$j" | py "j['total']") vs du $(du1 "$STORE")"
[ "$(echo "$j" | py "j['layers_bytes']")" = "$(du1 "$base" "$app1" "$app2")" ] || fail "layers bytes"
[ "$(echo "$j" | py "j['saved']")" = "$(du1 "$base")" ] || fail "saved"
[ "$(echo "$j" | py "j['unshared']")" = "$(( $(du1 "$base") * 2 + $(du1 "$app1") + $(du1 "$app2") ))" ] ||
  fail "unshared"
# The hardlinked 300 kB blob is counted once (du agrees: checked above); and
# the base layer is at least that big, not twice it.
[ "$(du1 "$base")" -lt 600000 ] || fail "hardlink counted twice by du?"

out=$(lc df)
expect_contains "$out" "IMAGE"
expect_contains "$out" "oci:$T/oci:one"
expect_contains "$out" "dftest"
expect_contains "$out" "sharing saves"
lc rm dftest >/dev/null
echo ok
