#!/usr/bin/env bash
# Multi-platform images: flat index.json entries and a nested index (OCI and
# Docker manifest list); --platform selection with containerd's fallbacks.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
for p in amd64 arm64 armv7 armv6 s390x; do mkdir -p "$T/$p" && echo "$p" >"$T/$p/which"; done

# Flat: one index.json entry per platform, all tagged "multi".
for p in linux/amd64 linux/arm64/v8 linux/arm/v6; do
  d=$(echo "$p" | sed 's|linux/||; s|/v8||; s|/||')
  "$MKIMAGE" --out "$T/flat" --format oci --tag multi --platform "$p" --layer "$T/$d"
done
which() { cat "$(layer_dir "$1" 0)/which"; }
lc pull --platform linux/arm64 "oci:$T/flat:multi" >/dev/null
[ "$(which "oci:$T/flat:multi")" = arm64 ] || fail "arm64 not picked"
[ "$(lc --json images | py "j[0]['platform']")" = linux/arm64 ] || fail "recorded platform"
lc pull --platform linux/amd64 "oci:$T/flat:multi" >/dev/null
[ "$(which "oci:$T/flat:multi")" = amd64 ] || fail "amd64 not picked"
lc pull --platform linux/aarch64 "oci:$T/flat:multi" >/dev/null
[ "$(which "oci:$T/flat:multi")" = arm64 ] || fail "aarch64 not normalized"
# arm/v7 has no exact entry: falls back to arm/v6.
lc pull --platform linux/arm/v7 "oci:$T/flat:multi" >/dev/null
[ "$(which "oci:$T/flat:multi")" = armv6 ] || fail "arm/v7 did not fall back to v6"
# The default is this machine.
host=$(uname -m)
if [ "$host" = x86_64 ]; then
  lc pull "oci:$T/flat:multi" >/dev/null
  [ "$(which "oci:$T/flat:multi")" = amd64 ] || fail "default platform"
fi
expect_fail_line "no image for platform linux/s390x" lc pull --platform linux/s390x "oci:$T/flat:multi"
expect_fail_line "available: linux/amd64, linux/arm64, linux/arm/v6" \
  lc pull --platform linux/ppc64le "oci:$T/flat:multi"
rc=0; lc pull --platform linux "oci:$T/flat:multi" 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "bad --platform should be a usage error (2), got $rc"

# Nested: index.json → one image index per tag → manifests (OCI, then Docker list).
for types in "" "--docker-media-types"; do
  out=$T/nested$types
  "$MKIMAGE" --out "$out" --format oci --tag n --nested-index $types --platform linux/arm/v7 --layer "$T/armv7"
  "$MKIMAGE" --out "$out" --format oci --tag n --nested-index $types --platform linux/s390x --layer "$T/s390x"
  lc pull --platform linux/s390x "oci:$out:n" >/dev/null
  [ "$(which "oci:$out:n")" = s390x ] || fail "nested $types: s390x"
  # arm64 runs arm/v7 images when there is no arm64 one.
  lc pull --platform linux/arm64 "oci:$out:n" >/dev/null
  [ "$(which "oci:$out:n")" = armv7 ] || fail "nested $types: arm64 → arm/v7 fallback"
  expect_fail_line "no image for platform linux/amd64" lc pull --platform linux/amd64 "oci:$out:n"
done
mt=$(python3 -c "
import json
i=json.load(open('$T/nested--docker-media-types/index.json'))
print(i['manifests'][0]['mediaType'])")
[ "$mt" = application/vnd.docker.distribution.manifest.list.v2+json ] || fail "manifest list type: $mt"

# A layout with two tags needs one named.
"$MKIMAGE" --out "$T/two" --format oci --tag a --layer "$T/amd64"
"$MKIMAGE" --out "$T/two" --format oci --tag b --layer "$T/arm64"
expect_fail_line "several images" lc pull "oci:$T/two"
expect_fail_line "no image tagged 'c' (tags: a, b)" lc pull "oci:$T/two:c"
lc pull "oci:$T/two:b" >/dev/null
[ "$(which "oci:$T/two:b")" = arm64 ] || fail "tag b"
echo ok
