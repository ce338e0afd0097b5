#!/usr/bin/env bash
# A blob corrupted in the registry's storage: the digest mismatch is reported
# (expected vs got, which layer), nothing of it is published, no image record.
source "$SRCDIR/tests/registry/lib.sh"

start_registry plain
R=127.0.0.1:$REG_plain_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag gz --layer "$WORK/t/base" --layer "$WORK/t/mid"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag cfg --layer "$WORK/t/top"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression none --tag raw --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" gz "$R/app/gz:1"
push "$WORK/oci" cfg "$R/app/cfg:1"
"$PY" "$HERE/push.py" "$WORK/oci" raw "http://$R" app/raw:1 >/dev/null || fail "push raw"

manifest() { "$REGFETCH" "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["manifest_digest"])'; }
blob_path() { echo "$REG_plain_STORAGE/docker/registry/v2/blobs/sha256/${1:7:2}/${1:7}/data"; }
# flip FILE: overwrite 16 bytes in the middle (same size).
flip() {
  local size
  size=$(stat -c %s "$1")
  printf 'corrupted-bytes!' | dd of="$1" bs=1 seek=$((size / 2)) conv=notrunc status=none
}

first_layer() {
  curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/$1/manifests/$(manifest "$R/$1:1")" \
    | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])'
}
layer=$(first_layer app/gz)
flip "$(blob_path "$layer")"

step "regfetch: digest mismatch, expected vs got, which layer"
expect_fail "digest mismatch for layer 0: expected $layer, got sha256:" "$REGFETCH" "$R/app/gz:1"

step "layerctl pull (gzip): the bad layer is named, nothing of it is published"
# The gzip check fails before the stream ends, so the error may name the
# corrupt stream rather than the digest; it must name the layer.
expect_fail "^layerctl: pull: .*$layer" "$LAYERCTL" pull -q "$R/app/gz:1"
if "$LAYERCTL" images | grep -q "$R/app/gz"; then fail "an image record was written"; fi
[ -z "$(find "$LAYERFS_ROOT/layers" -path '*/diff/usr/bin/blob' 2>/dev/null)" ] || fail "the corrupted layer was published"

step "layerctl pull (uncompressed): a digest mismatch, nothing published"
raw=$(first_layer app/raw)
flip "$(blob_path "$raw")"   # inside the random file's data: the tar stays well-formed
expect_fail "^layerctl: pull: .*$raw.*digest mismatch" "$LAYERCTL" pull -q "$R/app/raw:1"
if "$LAYERCTL" images | grep -q "$R/app/raw"; then fail "an image record was written"; fi
[ -z "$(find "$LAYERFS_ROOT/layers" -path '*/diff/usr/bin/blob' 2>/dev/null)" ] || fail "the corrupted layer was published"
[ -z "$(ls -A "$LAYERFS_ROOT/tmp" 2>/dev/null)" ] || { ls -la "$LAYERFS_ROOT/tmp"; fail "staging left in tmp/"; }

step "a corrupted config blob"
cfg=$(curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/app/cfg/manifests/$(manifest "$R/app/cfg:1")" \
  | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
flip "$(blob_path "$cfg")"
expect_fail "digest mismatch for blob $cfg" "$REGFETCH" "$R/app/cfg:1"
expect_fail "digest|$cfg" "$LAYERCTL" pull -q "$R/app/cfg:1"
if "$LAYERCTL" images | grep -q "$R/app/cfg"; then fail "an image record was written for a bad config"; fi
echo PASS
