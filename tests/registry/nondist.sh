#!/usr/bin/env bash
# Non-distributable layers (OCI nondistributable, Docker foreign) pull like
# any layer: from the registry when it holds the blob, else from the
# descriptor's urls, verified by digest and size. URLs are an SSRF vector:
# a link-local one is refused, and bytes that do not match are never used.
source "$SRCDIR/tests/registry/lib.sh"

# The registry accepts external urls in manifests only when configured to.
start_registry plain "$(printf 'validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n')"
R=127.0.0.1:$REG_plain_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression gzip --tag gz --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" gz "$R/app/gz:1"

# A plain web server for the blobs, logging each request.
BLOB_PORT=$(free_port)
"$PY" -m http.server --bind 127.0.0.1 --directory "$WORK/oci/blobs/sha256" "$BLOB_PORT" \
  >"$WORK/blobs.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$BLOB_PORT/"

# put_manifest REPO TAG MEDIATYPE URL...: the gz image's manifest with its top
# layer retyped and given these urls, PUT to REPO:TAG (the other blobs are
# mounted into REPO from app/gz first).
put_manifest() {
  local repo=$1 tag=$2 mt=$3
  shift 3
  "$PY" - "$WORK/oci" "$mt" "$@" >"$WORK/m.json" <<'PY'
import json, os, sys
d, mt, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
idx = json.load(open(os.path.join(d, "index.json")))
man = [m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "gz"][0]
m = json.load(open(os.path.join(d, "blobs/sha256", man["digest"].split(":")[1])))
m["layers"][-1]["mediaType"] = mt
if urls: m["layers"][-1]["urls"] = urls
sys.stdout.write(json.dumps(m))
PY
  local dg
  for dg in $("$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["config"]["digest"]); [print(l["digest"]) for l in m["layers"][:-1]]' "$WORK/m.json"); do
    curl -sf -o /dev/null -X POST "http://$R/v2/$repo/blobs/uploads/?mount=$dg&from=app/gz" || fail "mount $dg into $repo"
  done
  curl -sf -o /dev/null -X PUT -H "Content-Type: application/vnd.oci.image.manifest.v1+json" \
    --data-binary @"$WORK/m.json" "http://$R/v2/$repo/manifests/$tag" || fail "PUT manifest $repo:$tag"
}
NONDIST=application/vnd.oci.image.layer.nondistributable.v1.tar+gzip
FOREIGN=application/vnd.docker.image.rootfs.foreign.diff.tar.gzip

step "the registry holds the blob: pulled from it"
put_manifest app/gz nd "$NONDIST" "http://127.0.0.1:$BLOB_PORT/nothing-here"
"$LAYERCTL" pull -q "$R/app/gz:nd" >/dev/null || fail "pull of a non-distributable layer the registry holds"
grep -q "GET /nothing-here" "$WORK/blobs.log" && fail "the url was tried though the registry has the blob"

step "the registry lacks it: pulled from the descriptor's url"
rm -rf "$LAYERFS_ROOT"
TOP=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][-1]["digest"].split(":")[1])' "$WORK/m.json")
put_manifest foreign/app 1 "$NONDIST" "http://127.0.0.1:$BLOB_PORT/missing" "http://127.0.0.1:$BLOB_PORT/$TOP"
"$LAYERCTL" pull -q "$R/foreign/app:1" >/dev/null || fail "pull of a non-distributable layer from its urls"
grep -q "GET /$TOP" "$WORK/blobs.log" || fail "the layer was not fetched from its url"
f=$(find "$LAYERFS_ROOT/layers" -path '*/diff/app/version' | head -1)
[ -n "$f" ] && cmp -s "$f" "$WORK/t/top/app/version" || fail "layer content from the url differs"

step "Docker's foreign type, from the url"
rm -rf "$LAYERFS_ROOT"
put_manifest foreign/docker 1 "$FOREIGN" "http://127.0.0.1:$BLOB_PORT/$TOP"
"$LAYERCTL" pull -q "$R/foreign/docker:1" >/dev/null || fail "pull of a Docker foreign layer"

step "a url that serves other bytes: the digest check refuses them"
rm -rf "$LAYERFS_ROOT"
BASE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"].split(":")[1])' "$WORK/m.json")
put_manifest foreign/liar 1 "$NONDIST" "http://127.0.0.1:$BLOB_PORT/$BASE"
expect_fail "blob sha256:$TOP|sha256:$TOP" "$LAYERCTL" pull -q "$R/foreign/liar:1"
[ -z "$(ls -A "$LAYERFS_ROOT/tmp" 2>/dev/null)" ] || fail "tmp/ not empty"
"$LAYERCTL" images | grep -q foreign/liar && fail "the lying image was recorded"

step "a link-local url (cloud metadata) is never fetched"
put_manifest foreign/ssrf 1 "$NONDIST" "http://169.254.169.254/latest/meta-data/"
expect_fail "none of its urls served it \(http://169.254.169.254/latest/meta-data/: refused: link-local" \
  "$LAYERCTL" pull -q "$R/foreign/ssrf:1"
echo PASS
