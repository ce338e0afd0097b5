#!/usr/bin/env bash
# A pulled image pushed to another registry keeps its layer digests and its
# manifest (the store kept each layer's compressed blob); a second push finds
# every layer present at once; with pull --drop-blobs push rebuilds the layers
# (new digests, and says so). `push IMAGE oci:DIR:TAG` and
# `docker-archive:FILE:REF` export it (skopeo reads both), pulling the export
# back is the same image under a second name, and `tag` adds a name.
source "$SRCDIR/tests/registry/lib.sh"
py_get() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
layer_digests() {  # layer_digests SKOPEO_REF [flags]: the manifest's layer digests, one a line
  skopeo inspect --raw "$@" | "$PY" -c 'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}

start_registry src
start_registry dst
S=127.0.0.1:$REG_src_PORT
D=127.0.0.1:$REG_dst_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression gzip --tag v1 \
  --layer "$WORK/t/base" --layer "$WORK/t/mid" --layer "$WORK/t/top" >/dev/null
push "$WORK/oci" v1 "$S/harness/app:1"
layer_digests --tls-verify=false "docker://$S/harness/app:1" >"$WORK/src.layers"
src_manifest=$(skopeo inspect --raw --tls-verify=false "docker://$S/harness/app:1" | sha256sum | cut -d' ' -f1)

step "pull, push to another registry: the same layer digests and manifest"
"$LAYERCTL" -q pull "$S/harness/app:1" >/dev/null
"$LAYERCTL" --json push "$S/harness/app:1" "$D/copy/app:1" >"$WORK/push1.json" || fail "push"
[ "$(py_get '["regenerated"]' <"$WORK/push1.json")" = 0 ] || fail "layers regenerated: $(cat "$WORK/push1.json")"
[ "$(py_get '["uploaded"]' <"$WORK/push1.json")" = 4 ] || fail "want 3 layers + config uploaded"
layer_digests --tls-verify=false "docker://$D/copy/app:1" | diff -u "$WORK/src.layers" - ||
  fail "the pushed image has other layer digests"
[ "$(py_get '["manifest"]' <"$WORK/push1.json")" = "sha256:$src_manifest" ] || fail "another manifest"

step "push again: every layer present, nothing uploaded, in seconds"
start=$(date +%s%N)
"$LAYERCTL" --json push "$S/harness/app:1" "$D/copy/app:1" >"$WORK/push2.json" || fail "push again"
ms=$((($(date +%s%N) - start) / 1000000))
echo "  second push: $ms ms"
[ "$(py_get '["uploaded"]' <"$WORK/push2.json")" = 0 ] || fail "the second push uploaded"
[ "$(py_get '["existed"]' <"$WORK/push2.json")" = 4 ] || fail "not every blob found present"
[ "$(py_get '["regenerated"]' <"$WORK/push2.json")" = 0 ] || fail "the second push regenerated"
[ "$ms" -lt 10000 ] || fail "the second push took $ms ms"

step "pull --drop-blobs: push rebuilds the layers and says so"
LAYERFS_ROOT=$WORK/store-drop "$LAYERCTL" -q pull --drop-blobs "$S/harness/app:1" >/dev/null
[ -z "$(find "$WORK/store-drop/blobs" -type f -size +100k)" ] || fail "--drop-blobs kept layer blobs"
LAYERFS_ROOT=$WORK/store-drop "$LAYERCTL" push "$S/harness/app:1" "$D/rebuilt/app:1" >"$WORK/push3.out" ||
  fail "push without blobs"
grep -q "were not kept as blobs and were regenerated" "$WORK/push3.out" || fail "no note: $(cat "$WORK/push3.out")"
! layer_digests --tls-verify=false "docker://$D/rebuilt/app:1" | diff -q "$WORK/src.layers" - >/dev/null ||
  fail "rebuilt layers have the source digests?"

step "export: oci:DIR:TAG and docker-archive:FILE:REF, read by skopeo"
"$LAYERCTL" push "$S/harness/app:1" "oci:$WORK/export:v1" || fail "push to oci:"
layer_digests "oci:$WORK/export:v1" | diff -u "$WORK/src.layers" - || fail "oci export: other layers"
"$LAYERCTL" push "$S/harness/app:1" "oci:$WORK/export:v2" >/dev/null || fail "second tag in the layout"
[ "$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["manifests"]))' "$WORK/export/index.json")" = 2 ] ||
  fail "index.json: $(cat "$WORK/export/index.json")"
"$LAYERCTL" push "$S/harness/app:1" "oci:$WORK/export:v1" >/dev/null || fail "export again"
[ "$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["manifests"]))' "$WORK/export/index.json")" = 2 ] ||
  fail "the same tag twice in index.json"
"$LAYERCTL" push "$S/harness/app:1" "docker-archive:$WORK/app.tar:example.com/app:7" || fail "push to docker-archive:"
skopeo inspect "docker-archive:$WORK/app.tar" >"$WORK/da.json" || fail "skopeo cannot read the archive"
[ "$(tar -xOf "$WORK/app.tar" manifest.json | py_get '[0]["RepoTags"]')" = "['example.com/app:7']" ] ||
  fail "manifest.json: $(tar -xOf "$WORK/app.tar" manifest.json)"
mkdir -p "$WORK/junk" && echo x >"$WORK/junk/file"
expect_fail "neither empty nor an OCI layout" "$LAYERCTL" push "$S/harness/app:1" "oci:$WORK/junk:v1"
expect_fail "option '--tls-verify' is for registries" "$LAYERCTL" push --tls-verify=false "$S/harness/app:1" "oci:$WORK/x:1"

step "one image, several names: pulled via oci: and the registry, tagged"
"$LAYERCTL" -q pull "oci:$WORK/export:v1" >/dev/null
"$LAYERCTL" -q pull "docker-archive:$WORK/app.tar" >/dev/null
"$LAYERCTL" tag "$S/harness/app:1" mine:2 >/dev/null
id=$("$LAYERCTL" --json inspect "$S/harness/app:1" | py_get '["id"]')
for name in "oci:$WORK/export:v1" example.com/app:7 localhost/mine:2 mine:2; do
  [ "$("$LAYERCTL" --json inspect "$name" | py_get '["id"]')" = "$id" ] || fail "'$name' is another image"
done
[ "$("$LAYERCTL" -q images | sort -u | wc -l)" -eq 1 ] || fail "images -q: $("$LAYERCTL" -q images)"
"$LAYERCTL" images | grep -q "^localhost/mine:2 " || fail "images: $("$LAYERCTL" images)"
"$LAYERCTL" rmi mine:2 >/dev/null
"$LAYERCTL" --json inspect "$S/harness/app:1" >/dev/null || fail "rmi of one name removed the image"

step "gc --drop-blobs gives the disk back; push then rebuilds"
[ -n "$(find "$LAYERFS_ROOT/blobs" -type f -size +100k)" ] || fail "no kept layer blobs before"
"$LAYERCTL" gc --drop-blobs >"$WORK/gc.out" || fail "gc --drop-blobs"
grep -q "Removed blob $(head -1 "$WORK/src.layers")" "$WORK/gc.out" || fail "gc: $(cat "$WORK/gc.out")"
[ -z "$(find "$LAYERFS_ROOT/blobs" -type f -size +100k)" ] || fail "layer blobs left"
"$LAYERCTL" --json push "$S/harness/app:1" "$D/after-drop/app:1" >"$WORK/push4.json" || fail "push after drop"
[ "$(py_get '["regenerated"]' <"$WORK/push4.json")" = 3 ] || fail "push after drop: $(cat "$WORK/push4.json")"
"$LAYERCTL" fsck >/dev/null || fail "fsck after gc --drop-blobs"
echo PASS
