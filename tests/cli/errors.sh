#!/usr/bin/env bash
# Hostile manifests and configs: each pull fails with one line naming the
# reference and the fault, exit 1, and leaves nothing new under layers/ and
# no image record.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_trees
"$MKIMAGE" --out "$T/good" --format oci --tag t --layer "$T/base" --layer "$T/app1"
mut() { python3 "$SRCDIR/tests/cli/mutate_layout.py" "$1" "$T/good" "$T/$1"; }

check() {  # check MUTATION NEEDLE
  mut "$1"
  rm -rf "$STORE"
  expect_fail_line "$2" lc pull "oci:$T/$1:t"
  expect_contains "$LAST_ERR" "layerctl: pull: 'oci:$T/$1:t': "
  [ "$(layer_count)" -eq 0 ] || fail "$1: layers were published"
  [ "$(lc --json images)" = "[]" ] || fail "$1: an image was recorded"
  [ -z "$(ls -A "$STORE/tmp" 2>/dev/null)" ] || fail "$1: tmp/ not clean: $(ls -A "$STORE/tmp")"
}
# Documents: checked before any layer is touched.
check config-content "digest mismatch"
check config-size "differs from the descriptor"
check manifest-size "differs from the descriptor"
check manifest-content "digest mismatch"
check rootfs-type "rootfs.type is 'snapshot'"
check diff-ids-fewer "1 diff_ids for 2 layers"
check diff-ids-more "3 diff_ids for 2 layers"
check manifest-big "limit of 4194304"
check config-big "over the limit of 4194304"
check digest-upper "layers[0]: invalid digest"
check digest-dotdot "layers[0]: invalid digest 'sha256:../"
check digest-short "layers[0]: invalid digest"
check digest-algorithm "layers[0]: invalid digest 'md5:"
check config-digest-upper "config: invalid digest"
check layer-media-type "unsupported layer media type"
check config-media-type "not a container image config"
check schema1 "schema 1"

# Layers (the unpacker's checks; the bottom layer may be published, the bad
# top one never is).
check_layer() {  # check_layer MUTATION NEEDLE [GOOD_LAYERS]
  mut "$1"
  rm -rf "$STORE"
  expect_fail_line "$2" lc pull --jobs 1 "oci:$T/$1:t"
  [ "$(layer_count)" -le "${3:-1}" ] || fail "$1: the bad layer was published"
  [ "$(lc --json images)" = "[]" ] || fail "$1: an image was recorded"
  expect_contains "$LAST_ERR" "layerctl: pull: 'oci:$T/$1:t': "
}
check_layer layer-size-small "size"
check_layer layer-size-large "size"
check_layer layer-content "layer sha256:"
check_layer diff-id-wrong "diff_id"
check_layer layer-missing "blob sha256:"

# A later layer writing through an earlier layer's symlink: refused before
# that layer is published; the host directory the symlink names is untouched.
export SENTINEL=$T/sentinel
mkdir -p "$SENTINEL"
check_layer write-through "entry 'evil/pwned' is written through the symlink 'evil' -> '$SENTINEL' of layer sha256:" 3
[ -z "$(ls -A "$SENTINEL")" ] || fail "write-through: the host directory was written"
mut symlink-replaced
rm -rf "$STORE"
lc pull -q "oci:$T/symlink-replaced:t" >/dev/null
[ "$(lc --json images | grep -c '"name"')" -eq 1 ] || fail "symlink-replaced: image not recorded"
[ -z "$(ls -A "$SENTINEL")" ] || fail "symlink-replaced: the host directory was written"
# The same top layer, unpacked first for an image where nothing is below it
# (fine), is refused when another image puts it over the symlink.
mut through-only
rm -rf "$STORE"
lc pull -q "oci:$T/through-only:t" >/dev/null
expect_fail_line "entry 'evil/pwned' is written through the symlink 'evil'" lc pull "oci:$T/write-through:t"
[ "$(lc --json images | grep -c '"name"')" -eq 1 ] || fail "write-through over a present layer: image recorded"
rm -rf "$STORE"

# Refs and usage.
expect_fail_line "'oci:$T/nowhere': " lc pull "oci:$T/nowhere"
expect_fail_line "'docker-archive:$T/nowhere.tar': " lc pull "docker-archive:$T/nowhere.tar"
echo "not a tar" >"$T/junk.tar"
expect_fail_line "'docker-archive:$T/junk.tar': " lc pull "docker-archive:$T/junk.tar"
rc=0; lc pull 2>/dev/null || rc=$?; [ "$rc" -eq 2 ] || fail "pull without a ref: $rc"
rc=0; lc pull --jobs 0 "oci:$T/good:t" 2>/dev/null || rc=$?; [ "$rc" -eq 2 ] || fail "--jobs 0: $rc"
rc=0; lc pull --tls-verify=false "oci:$T/good:t" 2>/dev/null || rc=$?; [ "$rc" -eq 2 ] || fail "--tls-verify on oci: $rc"
# And the good one still pulls.
lc pull "oci:$T/good:t" | grep -q "pulled 2 layers" || fail "good image"
echo ok
