#!/usr/bin/env bash
# Lazily pullable layers against a real registry: `layerctl push
# --compression estargz|zstd:chunked` rewrites a pulled image; lazyfetch
# (lib/lazy alone) reads each layer's TOC with Range requests, opens one file
# as a daemon would on a miss (one request), completes the rest, and every
# object matches the files the image was built from; an eager `layerctl pull`
# of the rewritten images verifies their diff_ids.
source "$SRCDIR/tests/registry/lib.sh"
LAZYFETCH="$BUILDDIR/tests/registry/lazyfetch"

lazy_setup

step "build, push and pull a plain image"
push_sample_gz
"$LAYERCTL" pull -q "$R/app/gz:1" >/dev/null || fail "pull the plain image"

# check FORMAT REF: lazyfetch REF, then every regular file of the trees is an object.
check() {
  local format=$1 ref=$2 out=$WORK/objects-$1
  mkdir -p "$out"
  "$LAZYFETCH" "$ref" "$out" --open usr/bin/blob >"$WORK/lazy-$format.json" || fail "lazyfetch $ref"
  "$PY" - "$WORK/lazy-$format.json" "$format" <<'PY' || fail "lazyfetch $ref: wrong result"
import json, sys
layers = json.load(open(sys.argv[1]))
assert len(layers) == 3, layers
for l in layers:
    assert l["toc"] and l["format"] == sys.argv[2], l
    assert l["missing_after"] == 0, l
    assert l["toc_requests"] <= 2, l
opened = [l for l in layers if "opened" in l]
assert len(opened) == 1 and opened[0]["open_requests"] == 1, opened
print("  ok: %s: %s" % (sys.argv[2], ", ".join("%d entries %d requests %d/%d bytes" % (
    l["entries"], l["requests"], l["bytes"], l["size"]) for l in layers)))
PY
  local f sum n=0
  while IFS= read -r -d '' f; do
    [ -s "$f" ] || continue
    case "$f" in */.wh.*) continue ;; esac
    sum=$(sha256sum <"$f" | cut -d' ' -f1)
    cmp -s "$f" "$out/$sum" || fail "$format: $f is not object $sum"
    n=$((n + 1))
  done < <(find "$T" -type f -print0)
  echo "  ok: $format: $n files match their objects"
}

step "push --compression estargz"
"$LAYERCTL" push -q "$R/app/gz:1" "$R/app/esgz:1" --compression estargz >/dev/null || fail "push estargz"
check estargz "$R/app/esgz:1"

step "push --compression zstd:chunked"
"$LAYERCTL" push -q "$R/app/gz:1" "$R/app/zc:1" --compression zstd:chunked >/dev/null || fail "push zstd:chunked"
check zstd:chunked "$R/app/zc:1"

step "eager pulls of the rewritten images verify their diff_ids"
export LAYERFS_ROOT="$WORK/store2"
"$LAYERCTL" pull -q "$R/app/esgz:1" >/dev/null || fail "eager pull of the eStargz image"
"$LAYERCTL" pull -q "$R/app/zc:1" >/dev/null || fail "eager pull of the zstd:chunked image"
"$LAYERCTL" fsck >/dev/null || fail "fsck after the eager pulls"
echo "  ok"

step "--compression with anything else is a usage error"
set +e
"$LAYERCTL" push "$R/app/gz:1" "$R/app/x:1" --compression lz4 2>"$WORK/err"
rc=$?
set -e
[ "$rc" = 2 ] && grep -q "estargz or zstd:chunked" "$WORK/err" || fail "bad --compression: rc $rc, $(cat "$WORK/err")"
echo "  ok"
