#!/usr/bin/env bash
# commit and push, round trip through a real registry: an image built with
# mkimage is pulled, mounted and changed (write, modify, delete a lower file,
# rename a lower directory, hard link, xattr, chmod, chown, an opaque
# directory, a lazily copied-up big file); `layerctl commit` makes an image of
# it, `layerctl push` sends it (base layers by cross-repository mount), and a
# pull into a second store root mounts to the same tree, file by file. Also:
# the same commit once unmounted gives the same layer; zstd; chunked upload;
# Basic auth over TLS to another registry, where the base layers are not
# there and are sent as pulled (the store kept their blobs), so the image
# keeps its manifest digest; pushing again sends nothing.
source "$SRCDIR/tests/registry/lib.sh"
command -v htpasswd >/dev/null || { echo "SKIP: htpasswd (apache2-utils) not installed"; exit 77; }
[ -e /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
command -v setfattr >/dev/null || { echo "SKIP: setfattr (attr) not installed"; exit 77; }

MOUNTS=()
unmount_all() {
  local m
  for m in "${MOUNTS[@]}"; do
    "$LAYERCTL" umount "$m" >/dev/null 2>&1 || umount -l "$m" 2>/dev/null || true
  done
}
trap 'unmount_all; cleanup' EXIT
listing() { "$PY" "$HERE/tree_list.py" "$1"; }
json_get() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

REG_ACCESSLOG=1 start_registry plain
R=127.0.0.1:$REG_plain_PORT

step "base image: two layers, pushed with skopeo, pulled"
T=$WORK/t
mkdir -p "$T/base/etc" "$T/base/olddir/sub" "$T/base/data" "$T/base/bin" "$T/top/opt"
echo hello >"$T/base/etc/motd"
echo keep >"$T/base/etc/keep"
echo gone >"$T/base/etc/gone"
echo a >"$T/base/olddir/a"
echo b >"$T/base/olddir/sub/b"
head -c 3000000 /dev/urandom >"$T/base/data/big"
printf '#!/bin/sh\necho tool\n' >"$T/base/bin/tool"
chmod 755 "$T/base/bin/tool"
echo pair >"$T/base/bin/pair-a"
ln "$T/base/bin/pair-a" "$T/base/bin/pair-b"
echo top >"$T/top/opt/top.txt"
echo also >"$T/top/opt/other.txt"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag v1 --layer "$T/base" --layer "$T/top"
push "$WORK/oci" v1 "$R/base/app:v1"
"$LAYERCTL" pull -q "$R/base/app:v1" >/dev/null || fail "pull base"

step "mount and change the container"
M=$WORK/mnt
mkdir -p "$M"
"$LAYERCTL" mount --name c1 "$R/base/app:v1" "$M" >/dev/null || fail "mount"
MOUNTS+=("$M")
echo new >"$M/etc/new.txt"
echo changed >>"$M/etc/motd"
rm "$M/etc/gone"
mv "$M/olddir" "$M/newdir"
ln "$M/etc/new.txt" "$M/etc/new-link"
setfattr -n user.commit -v yes "$M/etc/keep"
chmod 700 "$M/bin/tool"
echo more >>"$M/bin/pair-a"  # a lower file with two names: both change
chown 1234:5678 "$M/etc/motd"
printf 'X' | dd of="$M/data/big" bs=1 seek=100 conv=notrunc status=none
rm -rf "$M/opt"
mkdir "$M/opt"
echo fresh >"$M/opt/only.txt"
mkdir -p "$M/deep/er"
echo deep >"$M/deep/er/f"
ln -s ../etc/motd "$M/deep/link"
sync -f "$M"  # cached writes reach the daemon (and so their times are final)
listing "$M" >/dev/null  # lookups of lower names linked to copied-up files settle
listing "$M" >"$WORK/view.txt"
grep -q '^newdir/sub/b ' "$WORK/view.txt" || fail "rename did not happen in the mount"
grep -q '^bin/pair-b .* link=bin/pair-a' "$WORK/view.txt" || fail "pair-b is not pair-a in the mount"

step "commit while mounted"
expect_fail "'nope': no such container" "$LAYERCTL" commit nope "$R/x:1"
expect_fail "bad image name" "$LAYERCTL" commit c1 "Bad Name!"
expect_fail "compression" "$LAYERCTL" commit --compression xz c1 "$R/x:1"
"$LAYERCTL" --json commit c1 "$R/committed/app:1" >"$WORK/commit1.json" || fail "commit"
cat "$WORK/commit1.json"
DIFF1=$(json_get '["layer"]["diff_id"]' <"$WORK/commit1.json")
[ "$(json_get '["layer"]["media_type"]' <"$WORK/commit1.json")" = application/vnd.oci.image.layer.v1.tar+gzip ] || fail "gzip media type"
[ "$(json_get '["layer"]["whiteouts"]' <"$WORK/commit1.json")" -ge 2 ] || fail "whiteouts counted"
"$LAYERCTL" images | grep -q "committed/app" || fail "committed image not listed"
listing "$M" | diff -u "$WORK/view.txt" - || fail "the mount changed during commit"

step "push: base layers mounted from base/app, committed layer uploaded"
"$LAYERCTL" --json push "$R/committed/app:1" "$R/committed/app:1" >"$WORK/push1.json" || fail "push"
cat "$WORK/push1.json"
[ "$(json_get '["mounted"]' <"$WORK/push1.json")" = 2 ] || fail "base layers not mounted"
[ "$(json_get '["uploaded"]' <"$WORK/push1.json")" = 2 ] || fail "layer + config not uploaded"
[ "$(json_get '["rewritten"]' <"$WORK/push1.json")" = False ] || fail "manifest rewritten"
grep -Eq '"POST /v2/committed/app/blobs/uploads/\?[^"]*mount=sha256[^"]*" 201' "$REG_plain_LOG" \
  || fail "no 201 answer to a mount in the registry log"
MAN1=$(json_get '["manifest"]' <"$WORK/push1.json")
[ "$MAN1" = "$(json_get '["manifest"]' <"$WORK/commit1.json")" ] || fail "pushed manifest differs from the local one"
# The registry serves it under that digest (skopeo checks all digests).
skopeo inspect --raw --tls-verify=false "docker://$R/committed/app:1" | sha256sum | grep -q "${MAN1#sha256:}" \
  || fail "registry manifest digest"

step "pushing again sends nothing"
"$LAYERCTL" --json push "$R/committed/app:1" "$R/committed/app:1" >"$WORK/push2.json" || fail "push again"
[ "$(json_get '["uploaded"]' <"$WORK/push2.json")" = 0 ] || fail "second push uploaded blobs"
[ "$(json_get '["existed"]' <"$WORK/push2.json")" = 4 ] || fail "second push: existed"

step "pull into a second store, mount: the same tree"
S2=$WORK/store2
M2=$WORK/mnt2
mkdir -p "$M2"
LAYERFS_ROOT=$S2 "$LAYERCTL" pull -q "$R/committed/app:1" >/dev/null || fail "pull committed"
LAYERFS_ROOT=$S2 "$LAYERCTL" mount --name back "$R/committed/app:1" "$M2" >/dev/null || fail "mount 2"
MOUNTS+=("$M2")
listing "$M2" >"$WORK/back.txt"
diff -u "$WORK/view.txt" "$WORK/back.txt" || fail "the pulled image differs from the container"
LAYERFS_ROOT=$S2 "$LAYERCTL" umount "$M2" >/dev/null

step "unmounted, the same changes give the same layer; zstd"
"$LAYERCTL" umount "$M" >/dev/null || fail "umount"
"$LAYERCTL" --json commit --compression zstd c1 "$R/zstd/app:1" >"$WORK/commit2.json" || fail "commit zstd"
[ "$(json_get '["layer"]["diff_id"]' <"$WORK/commit2.json")" = "$DIFF1" ] || fail "diff_id changed after umount"
[ "$(json_get '["layer"]["media_type"]' <"$WORK/commit2.json")" = application/vnd.oci.image.layer.v1.tar+zstd ] || fail "zstd media type"
"$LAYERCTL" -q push "$R/zstd/app:1" "$R/zstd/app:1" >/dev/null || fail "push zstd"
LAYERFS_ROOT=$S2 "$LAYERCTL" pull -q "$R/zstd/app:1" >/dev/null || fail "pull zstd"
LAYERFS_ROOT=$S2 "$LAYERCTL" mount "$R/zstd/app:1" "$M2" >/dev/null || fail "mount zstd"
listing "$M2" | diff -u "$WORK/view.txt" - || fail "zstd image differs"
LAYERFS_ROOT=$S2 "$LAYERCTL" umount "$M2" >/dev/null

step "--timestamp / SOURCE_DATE_EPOCH: clamped times, reproducible image"
"$LAYERCTL" --json commit --timestamp 1000000000 -m "fixed time" c1 "$R/ts/app:1" >"$WORK/ts1.json" || fail "commit --timestamp"
SOURCE_DATE_EPOCH=1000000000 "$LAYERCTL" --json commit -m "fixed time" c1 "$R/ts/app:2" >"$WORK/ts2.json" || fail "commit SOURCE_DATE_EPOCH"
ID1=$(json_get '["id"]' <"$WORK/ts1.json")
[ "$ID1" = "$(json_get '["id"]' <"$WORK/ts2.json")" ] || fail "the same commit at a fixed time gave another image id"
"$PY" - "$LAYERFS_ROOT/blobs/sha256/${ID1#sha256:}" "$WORK/ts1.json" <<'PY' || fail "config of the committed image"
import json, sys
c = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))
assert c["created"] == "2001-09-09T01:46:40Z", c["created"]
h = c["history"][-1]
assert h["created_by"] == "layerctl commit" and h["comment"] == "fixed time", h
assert c["rootfs"]["diff_ids"][-1] == r["layer"]["diff_id"] and len(c["rootfs"]["diff_ids"]) == 3
PY

step "chunked upload (to a registry with none of the blobs)"
REG_ACCESSLOG=1 start_registry chunk
C=127.0.0.1:$REG_chunk_PORT
"$LAYERCTL" --json push --chunk-size 512K "$R/committed/app:1" "$C/chunked/app:1" >"$WORK/push3.json" \
  || fail "chunked push"
[ "$(json_get '["requests"]["patch"]' <"$WORK/push3.json")" -ge 6 ] || fail "no PATCH chunks"
[ "$(count_lines '"PATCH /v2/chunked/app/blobs/uploads/[^"]*" 202' "$REG_chunk_LOG")" -ge 6 ] \
  || fail "registry log shows no chunks"
skopeo copy -q --src-tls-verify=false "docker://$C/chunked/app:1" "oci:$WORK/chunked:1" \
  || fail "skopeo cannot read the chunked image"
expect_fail "no such image" "$LAYERCTL" push "$R/none:1" "$R/none:1"

step "Basic auth over TLS, another registry: base layers sent as pulled"
PASS_WORD=pa55-Word
htpasswd -Bbn bob "$PASS_WORD" >"$WORK/htpasswd" 2>/dev/null
make_ca "$WORK/ca"
start_registry basic "$(printf 'auth:\n  htpasswd:\n    realm: r\n    path: %s\n' "$WORK/htpasswd")" \
  "$(tls_yaml "$WORK/ca")"
B=127.0.0.1:$REG_basic_PORT
CERTS=(--cert-dir "$WORK/ca/certs")
expect_fail "401" "$LAYERCTL" push "${CERTS[@]}" "$R/committed/app:1" "$B/team/app:1"
"$LAYERCTL" --json push "${CERTS[@]}" --creds "bob:$PASS_WORD" "$R/committed/app:1" "$B/team/app:1" \
  >"$WORK/push4.json" || fail "push with basic auth"
cat "$WORK/push4.json"
[ "$(json_get '["regenerated"]' <"$WORK/push4.json")" = 0 ] || fail "base layers regenerated"
[ "$(json_get '["rewritten"]' <"$WORK/push4.json")" = False ] || fail "manifest rewritten"
[ "$(json_get '["manifest"]' <"$WORK/push4.json")" = "$(json_get '["manifest"]' <"$WORK/push1.json")" ] \
  || fail "the image pushed to another registry has another manifest"
"$LAYERCTL" --json push "${CERTS[@]}" --creds "bob:$PASS_WORD" "$R/committed/app:1" "$B/team/app:1" \
  >"$WORK/push5.json" || fail "push again with basic auth"
[ "$(json_get '["uploaded"]' <"$WORK/push5.json")" = 0 ] || fail "the second push uploaded"
[ "$(json_get '["manifest"]' <"$WORK/push5.json")" = "$(json_get '["manifest"]' <"$WORK/push4.json")" ] \
  || fail "the second push gave another manifest"
S3=$WORK/store3
LAYERFS_ROOT=$S3 "$LAYERCTL" pull -q "${CERTS[@]}" --creds "bob:$PASS_WORD" "$B/team/app:1" >/dev/null \
  || fail "pull from the basic-auth registry"
LAYERFS_ROOT=$S3 "$LAYERCTL" mount "$B/team/app:1" "$M2" >/dev/null || fail "mount 3"
listing "$M2" | diff -u "$WORK/view.txt" - || fail "the image pulled back differs"
LAYERFS_ROOT=$S3 "$LAYERCTL" umount "$M2" >/dev/null
grep -q "$PASS_WORD" "$WORK"/*.json && fail "the password was printed"
echo "PASS"
