#!/usr/bin/env bash
# gc while a pull runs: the pull has published layers but not yet its image
# record. gc must not remove them; it waits for the pull (the store lock),
# and afterwards the image is whole and fsck finds nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
for i in 1 2 3 4 5; do
  mkdir -p "$T/l$i/d$i"
  head -c $((12 << 20)) /dev/urandom >"$T/l$i/d$i/big"
  for k in $(seq 1 100); do echo "$i $k" >"$T/l$i/d$i/f$k"; done
done
"$MKIMAGE" --out "$T/oci" --format oci --compression gzip --tag big \
  --layer "$T/l1" --layer "$T/l2" --layer "$T/l3" --layer "$T/l4" --layer "$T/l5"

caught=0
for round in 1 2 3; do
  rm -rf "$STORE"
  lc images >/dev/null  # creates the store
  lc pull --jobs 1 "oci:$T/oci:big" >"$T/pull.out" 2>&1 & pp=$!
  # Wait until a layer is published while the image record is not written.
  seen=0
  for _ in $(seq 1 3000); do
    if [ -n "$(ls "$STORE/layers/sha256" 2>/dev/null)" ] && [ -z "$(ls "$STORE/images")" ]; then
      seen=1; break
    fi
    kill -0 $pp 2>/dev/null || break
    sleep 0.01
  done
  gc_out=$(lc --json gc)
  gc_done=$(date +%s%N)
  rc=0; wait $pp || rc=$?
  [ "$rc" -eq 0 ] || fail "round $round: pull failed: $(cat "$T/pull.out")"
  [ "$(echo "$gc_out" | py "len([i for i in j['removed'] if i['kind'] == 'layer'])")" = 0 ] ||
    fail "round $round: gc removed layers of a running pull: $gc_out"
  [ "$(layer_count)" -eq 5 ] || fail "round $round: want 5 layers, got $(layer_count)"
  lc fsck -q >/dev/null || fail "round $round: fsck after gc: $(lc fsck)"
  for i in 1 2 3 4 5; do cmp "$T/l$i/d$i/big" <(layer_cat "$(layer_dir "oci:$T/oci:big" $((i - 1)))/d$i/big"); done
  if [ "$seen" -eq 1 ]; then
    caught=$((caught + 1))
    # gc could only finish after the pull wrote its record: the record is older.
    rec=$(date -r "$(ls "$STORE"/images/*.json)" +%s%N)
    [ "$rec" -le "$gc_done" ] || fail "round $round: gc finished before the pull's record was written"
  fi
done
[ "$caught" -ge 1 ] || fail "never caught the pull between a layer and its record (machine too fast?)"
echo "ok (caught mid-pull $caught times)"
