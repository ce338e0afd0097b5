#!/usr/bin/env bash
# fsck: a clean store passes; content changed, mode changed, file deleted and
# file added in a layer are each reported naming the layer and the path;
# --repair re-pulls from the image's source, or quarantines and marks the
# image broken when the source is gone; a read-only container (no upper) is
# not damage.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_trees
"$MKIMAGE" --out "$T/oci" --format oci --tag one --layer "$T/base" --layer "$T/app1"
"$MKIMAGE" --out "$T/oci2" --format oci --tag two --layer "$T/base" --layer "$T/app2"
lc pull "oci:$T/oci:one" >/dev/null
lc pull "oci:$T/oci2:two" >/dev/null

out=$(lc fsck) || fail "fsck on a clean store: $out"
expect_contains "$out" "clean: 3 layers"
[ "$(lc --json fsck | py "j['damaged']")" = False ] || fail "json damaged"

# A read-only container has no upper directory, and that is not damage.
if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ]; then
  mkdir -p "$T/mnt-ro"
  lc mount --read-only "oci:$T/oci:one" "$T/mnt-ro" >/dev/null
  out=$(lc fsck) || { lc umount "$T/mnt-ro" >/dev/null; fail "fsck with a read-only container: $out"; }
  expect_contains "$out" "1 containers"
  lc umount "$T/mnt-ro" >/dev/null
fi

base=$(layer_dir "oci:$T/oci:one" 0); app2=$(layer_dir "oci:$T/oci2:two" 1)
bid=sha256:$(basename "$(dirname "$base")"); a2id=sha256:$(basename "$(dirname "$app2")")
echo "tampered" >"$base/etc/hello"              # content changed (mtime too)
chmod 0600 "$base/bin/blob"                      # mode changed
rm "$base/etc/victim"                            # deleted
echo "new" >"$app2/srv/intruder"                 # added
rc=0; out=$(lc fsck 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "fsck exit $rc on a damaged store: $out"
expect_contains "$out" "layer $bid: 'etc/hello': content changed"
expect_contains "$out" "layer $bid: 'bin/blob': mode 0644 -> 0600"
expect_contains "$out" "layer $bid: 'etc/victim': missing"
expect_contains "$out" "layer $a2id: 'srv/intruder': added"
expect_contains "$out" "image oci:$T/oci:one: uses damaged layer $bid"
expect_not_contains "$out" "app1"
j=$(lc --json fsck || true)
[ "$(echo "$j" | py "j['damaged']")" = True ] || fail "json damaged"
[ "$(echo "$j" | py "sorted({f['name'] for f in j['findings'] if f['subject'] == 'layer'})")" = \
  "$(python3 -c "print(sorted(['$bid', '$a2id']))")" ] || fail "json layers: $j"

# The source of image two is gone: its damaged layer is quarantined and the
# image marked broken. Image one's source is there: re-pulled, restored.
rm -rf "$T/oci2"
rc=0; out=$(lc fsck --repair 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "repair with a source gone should leave damage (exit 1), got $rc: $out"
expect_contains "$out" "repair: image oci:$T/oci:one: re-pulled"
expect_contains "$out" "repair: layer $a2id: quarantined at quarantine/"
expect_contains "$out" "repair: image oci:$T/oci2:two: marked broken"
[ "$(cat "$base/etc/hello")" = "base" ] || fail "base layer not restored"
[ -f "$base/etc/victim" ] || fail "deleted file not restored"
[ "$(stat -c %a "$base/bin/blob")" = 644 ] || fail "mode not restored"
q=$(ls -d "$STORE"/quarantine/layer-sha256-*)
[ "$(echo "$q" | wc -l)" -eq 2 ] || fail "want 2 quarantined layers: $q"
grep -rqx "tampered" $q || fail "the damaged copy of the base layer was not kept"
[ -f "$(ls -d "$STORE"/quarantine/layer-sha256-"${a2id#sha256:}"-*)/diff/srv/intruder" ] ||
  fail "the quarantined layer lost its contents"
expect_contains "$(lc --json images)" '"name": "oci:'"$T"'/oci2:two"'
expect_contains "$(lc --json images)" '"broken": "'
expect_contains "$(lc images)" "oci:$T/oci2:two (broken)"
expect_not_contains "$(lc images)" "oci:$T/oci:one (broken)"
mkdir -p "$T/mnt-broken"
rc=0; out=$(lc mount "oci:$T/oci2:two" "$T/mnt-broken" 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "mounting a broken image should fail (exit 1), got $rc: $out"
expect_contains "$out" "oci:$T/oci2:two': marked broken by fsck --repair"
rc=0; out=$(lc fsck 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "broken image should still count as damage"
expect_contains "$out" "image oci:$T/oci2:two: marked broken"
expect_contains "$out" "layer $a2id is not in the store"
expect_not_contains "$out" "image oci:$T/oci:one:"

# Once the broken image is removed, the store is clean again.
lc rmi "oci:$T/oci2:two" >/dev/null
out=$(lc fsck) || fail "fsck after rmi of the broken image: $out"

# gc keeps quarantine/ unless asked; --quarantine empties it.
lc gc >/dev/null
[ "$(ls "$STORE/quarantine" | wc -l)" -eq 2 ] || fail "gc without --quarantine removed quarantined layers"
out=$(lc gc --quarantine --dry-run)
expect_contains "$out" "Would remove quarantined layer-sha256-${a2id#sha256:}-"
[ "$(ls "$STORE/quarantine" | wc -l)" -eq 2 ] || fail "gc --dry-run removed something"
out=$(lc gc --quarantine)
expect_contains "$out" "Removed 2 items"
[ -z "$(ls "$STORE/quarantine")" ] || fail "gc --quarantine left: $(ls "$STORE/quarantine")"
out=$(lc fsck) || fail "fsck after gc --quarantine: $out"

# A layer unpacked before file lists existed: noted, not damage.
rm "$(dirname "$base")/files.json.zst"
out=$(lc fsck) || fail "a layer without a file list is not damage: $out"
expect_contains "$out" "note: layer $bid: no manifest"
echo ok
