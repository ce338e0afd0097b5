#!/usr/bin/env bash
# pull from an OCI layout and both docker-archive formats, every compression,
# OCI and Docker media types; a repull does no unpack work and says so.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
make_trees

# OCI layout, gzip, two layers, the second deleting a file.
"$MKIMAGE" --out "$T/oci" --format oci --tag v1 --layer "$T/base" --layer "$T/del"
out=$(lc pull "oci:$T/oci:v1")
expect_contains "$out" "pulled 2 layers (2 unpacked, 0 already present)"
[ "$(layer_count)" -eq 2 ] || fail "want 2 layers in the store"
d0=$(layer_dir "oci:$T/oci:v1" 0)
cmp "$T/base/bin/blob" <(layer_cat "$d0/bin/blob") || fail "layer 0 content differs"
[ "$(readlink "$d0/bin/hello-link")" = "../etc/hello" ] || fail "symlink lost"
d1=$(layer_dir "oci:$T/oci:v1" 1)
[ -c "$d1/etc/victim" ] || fail "whiteout not converted to a 0:0 char device"
[ ! -e "$d1/etc/.wh.victim" ] || fail ".wh. file left in the tree"

# Repull: nothing to unpack, and nothing in the store changes.
before=$(find "$STORE/layers" -printf '%p %i %T@\n' | sort | md5sum)
out=$(lc pull "oci:$T/oci:v1")
expect_contains "$out" "all layers present, nothing to unpack"
after=$(find "$STORE/layers" -printf '%p %i %T@\n' | sort | md5sum)
[ "$before" = "$after" ] || fail "repull touched layers/"
j=$(lc --json pull "oci:$T/oci:v1")
[ "$(echo "$j" | py "j['nothing_to_unpack'], j['unpacked'], j['reused'], j['bytes_fetched']")" = \
  "True 0 2 0" ] || fail "json repull summary: $j"
# -q prints the id only.
[ "$(lc -q pull "oci:$T/oci:v1")" = "$(lc --json images | py "j[0]['id']")" ] || fail "-q id"

# Untagged single-image layout: the tag may be omitted.
"$MKIMAGE" --out "$T/oci-zstd" --format oci --compression zstd --layer "$T/base" --layer "$T/app1"
out=$(lc pull "oci:$T/oci-zstd")
expect_contains "$out" "(1 unpacked, 1 already present)"

# Uncompressed layers with Docker media types.
"$MKIMAGE" --out "$T/oci-docker" --format oci --compression none --docker-media-types \
  --tag d --layer "$T/base" --layer "$T/app2"
lc pull "oci:$T/oci-docker:d" >/dev/null
m=$(lc --json inspect "oci:$T/oci-docker:d")
[ "$(echo "$m" | py "j['manifest']['mediaType']")" = \
  "application/vnd.docker.distribution.manifest.v2+json" ] || fail "docker manifest type"
[ "$(echo "$m" | py "j['layers'][1]['shared_by']")" = "1" ] || fail "app2 layer shared_by"
[ "$(echo "$m" | py "j['layers'][0]['shared_by']")" = "3" ] || fail "base layer shared_by"
[ "$(layer_count)" -eq 4 ] || fail "want 4 layers (base, del, app1, app2), got $(layer_count)"

# docker-archive, Docker 25+ format (OCI layout + manifest.json), gzip layers.
"$MKIMAGE" --out "$T/new.tar" --format docker-archive --compression gzip --tag example/app:v2 \
  --layer "$T/base" --layer "$T/app1"
out=$(lc pull "docker-archive:$T/new.tar")
expect_contains "$out" "example/app:v2: all layers present, nothing to unpack"
lc inspect example/app:v2 >/dev/null
# By RepoTag and by index, too.
lc pull "docker-archive:$T/new.tar:example/app:v2" >/dev/null
lc pull "docker-archive:$T/new.tar:@0" >/dev/null
expect_fail_line "no image tagged 'other:v1'" lc pull "docker-archive:$T/new.tar:other:v1"

# docker-archive, legacy format (<id>/layer.tar, uncompressed), into a fresh store.
"$MKIMAGE" --out "$T/legacy.tar" --format docker-archive-legacy --tag legacy/app:v3 \
  --layer "$T/base" --layer "$T/del" --layer "$T/app2"
STORE=$T/store2
out=$(lc pull "docker-archive:$T/legacy.tar:legacy/app:v3")
expect_contains "$out" "pulled 3 layers (3 unpacked, 0 already present)"
cmp "$T/app2/srv/app" <(layer_cat "$(layer_dir legacy/app:v3 2)/srv/app") || fail "legacy layer content"
[ -c "$(layer_dir legacy/app:v3 1)/etc/victim" ] || fail "legacy whiteout"
# Same layers as the OCI layout: identical diff_ids, so a pull of it reuses them.
out=$(lc pull "oci:$T/oci:v1")
expect_contains "$out" "all layers present, nothing to unpack"

# A legacy archive whose layer.tar is gzip-compressed (docker load accepts it).
mkdir -p "$T/gz" && (cd "$T/gz" && tar xf "$T/legacy.tar")
for f in "$T"/gz/*/layer.tar; do gzip -n "$f" && mv "$f.gz" "$f"; done
(cd "$T/gz" && tar cf "$T/legacy-gz.tar" .)
STORE=$T/store3
out=$(lc pull "docker-archive:$T/legacy-gz.tar")
expect_contains "$out" "pulled 3 layers (3 unpacked, 0 already present)"
[ -c "$(layer_dir legacy/app:v3 1)/etc/victim" ] || fail "gzip legacy whiteout"
echo ok
