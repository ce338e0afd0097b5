#!/usr/bin/env bash
# images, inspect and rmi: listing (table, --json, -q), layer sharing counts,
# rmi removes only what nothing else uses, and one-line errors.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_trees
"$MKIMAGE" --out "$T/oci" --format oci --tag one --layer "$T/base" --layer "$T/app1"
"$MKIMAGE" --out "$T/oci" --format oci --tag two --layer "$T/base" --layer "$T/app2"
lc pull "oci:$T/oci:one" >/dev/null
lc pull "oci:$T/oci:two" >/dev/null
[ "$(layer_count)" -eq 3 ] || fail "want 3 layers (shared base)"

# images: table, json, -q.
out=$(lc images)
expect_contains "$(echo "$out" | head -1)" "NAME"
expect_contains "$out" "oci:$T/oci:one"
expect_contains "$out" "oci:$T/oci:two"
j=$(lc --json images)
[ "$(echo "$j" | py "len(j)")" = 2 ] || fail "json images count"
[ "$(echo "$j" | py "sorted(i['name'] for i in j) == ['oci:$T/oci:one', 'oci:$T/oci:two']")" = True ] || fail "names"
echo "$j" | py "all(i['id'].startswith('sha256:') and i['size'] > 300000 and len(i['layers']) == 2 for i in j)" |
  grep -qx True || fail "json fields: $j"
[ "$(lc -q images | wc -l)" -eq 2 ] || fail "-q"
# The table's id column is the first 12 hex digits of the json id.
id1=$(echo "$j" | py "[i['id'] for i in j if i['name'].endswith(':one')][0]")
expect_contains "$out" "${id1:7:12}"

# inspect: sharing, sizes, documents; by name and by short id.
i=$(lc --json inspect "oci:$T/oci:one")
[ "$(echo "$i" | py "[l['shared_by'] for l in j['layers']]")" = "[2, 1]" ] || fail "shared_by: $i"
[ "$(echo "$i" | py "j['config']['rootfs']['type']")" = layers ] || fail "config in inspect"
[ "$(echo "$i" | py "j['manifest']['layers'][0]['size'] == j['layers'][0]['compressed_size']")" = True ] || fail "sizes"
[ "$(echo "$i" | py "j['layers'][0]['size'] >= 300000")" = True ] || fail "unpacked size"
txt=$(lc inspect "${id1:7:12}")
expect_contains "$txt" "Name:       oci:$T/oci:one"
expect_contains "$txt" "2 images"
expect_fail_line "'nope': no such image" lc inspect nope
expect_fail_line "'nope': no such image" lc rmi nope

# rmi one: the shared base survives, its own layer goes.
app1=$(echo "$i" | py "j['layers'][1]['diff_id'].split(':')[1]")
base=$(echo "$i" | py "j['layers'][0]['diff_id'].split(':')[1]")
out=$(lc rmi "oci:$T/oci:one")
expect_contains "$out" "Untagged: oci:$T/oci:one"
expect_contains "$out" "Deleted layer: sha256:$app1"
expect_not_contains "$out" "$base"
[ ! -e "$STORE/layers/sha256/$app1" ] || fail "unreferenced layer kept"
[ -d "$STORE/layers/sha256/$base/diff" ] || fail "shared layer removed"
[ "$(layer_count)" -eq 2 ] || fail "want 2 layers after rmi"
[ "$(lc --json inspect "oci:$T/oci:two" | py "j['layers'][0]['shared_by']")" = 1 ] || fail "shared_by after rmi"
lc pull "oci:$T/oci:two" | grep -q "nothing to unpack" || fail "two lost layers"
# Its blobs went too; two's are kept.
[ ! -e "$STORE/blobs/sha256/${id1:7}" ] || fail "config blob of removed image kept"
# rmi the last one: the store is empty.
j=$(lc --json rmi "oci:$T/oci:two")
[ "$(echo "$j" | py "len(j[0]['removed_layers'])")" = 2 ] || fail "rmi json: $j"
[ "$(layer_count)" -eq 0 ] || fail "layers left"
[ "$(lc --json images)" = "[]" ] || fail "images left"
echo ok
