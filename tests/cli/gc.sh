#!/usr/bin/env bash
# gc removes exactly the layers, blobs and tmp/ entries nothing references
# (here: what a crashed rmi and a crashed pull left behind), keeps shared
# layers, reports the bytes it frees (matching du), and --dry-run changes
# nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_trees
"$MKIMAGE" --out "$T/oci" --format oci --tag one --layer "$T/base" --layer "$T/app1"
"$MKIMAGE" --out "$T/oci" --format oci --tag two --layer "$T/base" --layer "$T/app2"
lc pull "oci:$T/oci:one" >/dev/null
lc pull "oci:$T/oci:two" >/dev/null
[ "$(layer_count)" -eq 3 ] || fail "want 3 layers"
base=$(layer_dir "oci:$T/oci:one" 0); app1=$(layer_dir "oci:$T/oci:one" 1)
app2=$(layer_dir "oci:$T/oci:two" 1)
j=$(lc --json inspect "oci:$T/oci:one")
manifest=$(echo "$j" | py "j['manifest_digest']"); config=$(echo "$j" | py "j['id']")
# pull keeps each layer's compressed blob: app1's goes with its layer.
app1_blob=$(echo "$j" | py "j['manifest']['layers'][1]['digest']")

# Nothing to collect yet.
out=$(lc gc)
expect_contains "$out" "Removed 0 items"

# An rmi that died after unlinking the image record, and a pull that died
# with its staging dir still in tmp/ (no process holds its lock).
rm "$STORE"/images/*one*.json
mkdir -p "$STORE/tmp/layer-0123456789abcdef/diff"
head -c 100000 /dev/urandom >"$STORE/tmp/layer-0123456789abcdef/diff/partial"

app1_dir=$(dirname "$app1")
m_blob=$STORE/blobs/sha256/${manifest#sha256:}; c_blob=$STORE/blobs/sha256/${config#sha256:}
l_blob=$STORE/blobs/sha256/${app1_blob#sha256:}
[ -f "$l_blob" ] || fail "pull did not keep the layer blob $app1_blob"
want_bytes=$(du -sB1 -c "$app1_dir" "$m_blob" "$c_blob" "$l_blob" "$STORE/tmp/layer-0123456789abcdef" | tail -1 | cut -f1)

dry=$(lc --json gc --dry-run)
[ "$(echo "$dry" | py "j['dry_run']")" = True ] || fail "dry_run flag"
got=$(echo "$dry" | py "sorted((i['kind'], i['name']) for i in j['removed'])")
want=$(python3 -c "print(sorted([('layer', 'sha256:$(basename "$app1_dir")'), ('blob', '$manifest'),
  ('blob', '$config'), ('blob', '$app1_blob'), ('tmp', 'layer-0123456789abcdef')]))")
[ "$got" = "$want" ] || fail "dry run lists $got, want $want"
[ "$(echo "$dry" | py "j['bytes']")" = "$want_bytes" ] || fail "dry-run bytes $(echo "$dry" | py "j['bytes']") != du $want_bytes"
[ -d "$app1_dir" ] && [ -e "$m_blob" ] && [ -d "$STORE/tmp/layer-0123456789abcdef" ] ||
  fail "dry run removed something"

out=$(lc gc)
expect_contains "$out" "Removed layer sha256:$(basename "$app1_dir")"
expect_contains "$out" "Removed 5 items"
[ ! -e "$app1_dir" ] || fail "unreferenced layer kept"
[ ! -e "$m_blob" ] && [ ! -e "$c_blob" ] && [ ! -e "$l_blob" ] || fail "unreferenced blobs kept"
[ ! -e "$STORE/tmp/layer-0123456789abcdef" ] || fail "tmp leftover kept"
[ -d "$base" ] && [ -d "$app2" ] || fail "gc removed a layer image two uses"
[ "$(layer_count)" -eq 2 ] || fail "want 2 layers after gc"
[ -z "$(ls -A "$STORE/tmp")" ] || fail "tmp/ not empty after gc: $(ls -A "$STORE/tmp")"
lc fsck >/dev/null || fail "store not clean after gc"
[ "$(cat "$app2/srv/app")" = "app two" ] || fail "image two damaged"

# rmi of the last image leaves an empty store; gc then has nothing to do.
lc rmi "oci:$T/oci:two" >/dev/null
[ "$(layer_count)" -eq 0 ] || fail "layers left after rmi"
[ -z "$(ls -A "$STORE/blobs/sha256")" ] || fail "blobs left after rmi"
[ "$(lc --json gc | py "len(j['removed'])")" = 0 ] || fail "gc after rmi found something"
rc=0; lc gc --bogus 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "a bad option should exit 2, got $rc"
echo ok
