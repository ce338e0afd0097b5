#!/usr/bin/env bash
# Input checks of issue 17 on OCI layouts: an index.json with one invalid
# entry still pulls its other tags (with a warning); non-distributable layer
# types pull like any layer; a layer already in the store is not reused for a
# descriptor that contradicts what the store verified about its blob; a device
# number Linux cannot represent is refused, naming the entry.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_trees
"$MKIMAGE" --out "$T/good" --format oci --tag t --layer "$T/base" --layer "$T/app1"
mut() { python3 "$SRCDIR/tests/cli/mutate_layout.py" "$1" "$T/good" "$T/$1"; }
clean_tmp() { [ -z "$(ls -A "$STORE/tmp" 2>/dev/null)" ] || fail "tmp/ not clean: $(ls -A "$STORE/tmp")"; }

echo "--- index.json with an invalid entry for another tag"
mut index-bad-entry
err=$(lc pull -q "oci:$T/index-bad-entry:t" 2>&1 >/dev/null) || fail "pull of the valid tag: $err"
expect_contains "$err" "layerctl: pull: warning: oci:$T/index-bad-entry:t: index.json: skipped 'other': index: manifests[1]: invalid digest"
[ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] || fail "want one warning line, got: $err"
expect_fail_line "index: manifests[1]: invalid digest" lc pull "oci:$T/index-bad-entry:other"

echo "--- non-distributable layers pull like any layer"
rm -rf "$STORE"
mut nondist
lc pull -q "oci:$T/nondist:t" >/dev/null || fail "OCI non-distributable layers refused"
mut foreign
rm -rf "$STORE"
lc pull -q "oci:$T/foreign:t" >/dev/null || fail "Docker foreign layer refused"
[ "$(layer_count)" -eq 2 ] || fail "foreign: layers missing"

echo "--- a present layer is not reused for a descriptor that lies"
rm -rf "$STORE"
lc pull -q "oci:$T/good:t" >/dev/null
mut layer-size-large
expect_fail_line "manifest: layers[1] sha256:" lc pull "oci:$T/layer-size-large:t"
expect_contains "$LAST_ERR" "bytes (as verified when the store unpacked it)"
mut layer-digest-swap
expect_fail_line "manifest: layers[1] sha256:" lc pull "oci:$T/layer-digest-swap:t"
expect_contains "$LAST_ERR" "is the blob of layer sha256:"
n=$(lc --json images | py 'len(j)')
[ "$n" -eq 1 ] || fail "a lying image was recorded ($n images)"
clean_tmp

echo "--- a device number Linux cannot represent"
rm -rf "$STORE"
mut device-huge
expect_fail_line "entry 'dev/huge': device number 8589934592:1 cannot be represented" lc pull "oci:$T/device-huge:t"
[ "$(lc --json images)" = "[]" ] || fail "device-huge: an image was recorded"
clean_tmp
echo PASS
