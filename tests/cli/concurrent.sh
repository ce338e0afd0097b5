#!/usr/bin/env bash
# Two pulls at once, of images that share a base, into one store: both
# succeed, the base is unpacked once and both images use the same directory.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/base/d" "$T/mid" "$T/a" "$T/b"
for i in $(seq 1 400); do echo "file $i" >"$T/base/d/f$i"; done
head -c $((24 << 20)) /dev/urandom >"$T/base/big"
head -c $((4 << 20)) /dev/urandom >"$T/mid/m"
echo a >"$T/a/which"; echo b >"$T/b/which"
"$MKIMAGE" --out "$T/oci" --format oci --compression none --tag a \
  --layer "$T/base" --layer "$T/mid" --layer "$T/a"
"$MKIMAGE" --out "$T/oci" --format oci --compression none --tag b \
  --layer "$T/base" --layer "$T/mid" --layer "$T/b"
"$MKIMAGE" --out "$T/b.tar" --format docker-archive --tag img/b:1 \
  --layer "$T/base" --layer "$T/mid" --layer "$T/b"

for round in 1 2 3; do
  rm -rf "$STORE"
  second="oci:$T/oci:b"
  [ "$round" -eq 3 ] && second="docker-archive:$T/b.tar"
  lc --json pull --jobs 3 "oci:$T/oci:a" >"$T/a.json" 2>"$T/a.err" & pa=$!
  lc --json pull --jobs 1 "$second" >"$T/b.json" 2>"$T/b.err" & pb=$!
  ra=0; wait $pa || ra=$?
  rb=0; wait $pb || rb=$?
  [ "$ra" -eq 0 ] || fail "round $round: pull a failed: $(cat "$T/a.err")"
  [ "$rb" -eq 0 ] || fail "round $round: pull b failed: $(cat "$T/b.err")"
  [ "$(layer_count)" -eq 4 ] || fail "round $round: want 4 layers, got $(layer_count)"
  # Between them the two pulls unpacked each shared layer once.
  counts=$(python3 -c "import json; a=json.load(open('$T/a.json')); b=json.load(open('$T/b.json'))
print(a['unpacked'] + b['unpacked'], a['name'], b['name'])")
  read -r unpacked name_a name_b <<<"$counts"
  [ "$unpacked" -eq 4 ] || fail "round $round: unpacked $unpacked layers in all, want 4"
  [ "$(lc -q images | wc -l)" -eq 2 ] || fail "round $round: want 2 images"
  da=$(layer_dir "$name_a" 0); db=$(layer_dir "$name_b" 0)
  [ "$da" = "$db" ] || fail "round $round: base layer not shared"
  cmp "$T/base/big" <(layer_cat "$da/big") || fail "round $round: base content"
  [ "$(cat "$(layer_dir "oci:$T/oci:a" 2)/which")" = a ] || fail "round $round: top of a"
  [ -z "$(ls -A "$STORE/tmp")" ] || fail "round $round: tmp/ not clean"
done
echo ok
