#!/usr/bin/env bash
# Two pulls at once of two images sharing their base layer: both succeed, the
# base is unpacked and stored once.
source "$SRCDIR/tests/registry/lib.sh"

start_registry plain
R=127.0.0.1:$REG_plain_PORT
make_trees "$WORK/t"
head -c 4000000 /dev/urandom >"$WORK/t/base/usr/bin/blob2"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag one --layer "$WORK/t/base" --layer "$WORK/t/mid"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression zstd --tag two --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" one "$R/app/one:1"
push "$WORK/oci" two "$R/app/two:1"

for round in 1 2 3; do
  step "round $round: two pulls at once"
  "$LAYERCTL" pull -q "$R/app/one:1" >"$WORK/one.out" 2>&1 &
  a=$!
  "$LAYERCTL" pull -q "$R/app/two:1" >"$WORK/two.out" 2>&1 &
  b=$!
  wait $a || { cat "$WORK/one.out"; fail "pull one"; }
  wait $b || { cat "$WORK/two.out"; fail "pull two"; }
  "$LAYERCTL" images >"$WORK/images.txt"
  grep -q "$R/app/one" "$WORK/images.txt" || fail "image one missing"
  grep -q "$R/app/two" "$WORK/images.txt" || fail "image two missing"
  n=$(find "$LAYERFS_ROOT/layers" -path '*/diff/usr/bin/blob2' | wc -l)
  [ "$n" -eq 1 ] || fail "the shared base layer is stored $n times"
  f=$(find "$LAYERFS_ROOT/layers" -path '*/diff/usr/bin/blob2')
  cmp -s <(layer_cat "$f") "$WORK/t/base/usr/bin/blob2" || fail "base layer content"
  "$LAYERCTL" rmi "$R/app/one:1" >/dev/null
  "$LAYERCTL" rmi "$R/app/two:1" >/dev/null
done
echo PASS
