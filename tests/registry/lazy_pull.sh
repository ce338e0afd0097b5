#!/usr/bin/env bash
# Lazy pull (issue 20) against a real registry and real mounts: an image
# pushed by `layerctl push --compression zstd:chunked|estargz` is pulled
# with --lazy (TOCs only, metadata trees written, no file content), mounted,
# and reads the same tree as an eager pull of it, fetching each file's
# frames on open. A registry that goes away gives EIO and one daemon log
# line, and a later read succeeds once it is back. Hostile TOCs (a digest
# that does not match, a path escaping the layer, an offset past the blob's
# end) are refused with one line.
source "$SRCDIR/tests/registry/lib.sh"
mount_test
listing() { (cd "$1" && "$PY" "$HERE/tree_list.py" .); }
objects_bytes() { du -sb "$1/objects" | cut -f1; }

lazy_setup
# Many small files next to each other, for the coalesced fetches.
mkdir -p "$T/mid/usr/share/small"
for i in $(seq 1 60); do seq 1 $((i * 50)) >"$T/mid/usr/share/small/f$i"; done
ln "$T/mid/usr/lib/lib.so" "$T/mid/usr/lib/lib-link.so"

step "a plain image, pulled, pushed again as zstd:chunked and eStargz"
push_sample_gz
"$LAYERCTL" pull -q "$R/app/gz:1" >/dev/null || fail "pull the plain image"
"$LAYERCTL" push -q "$R/app/gz:1" "$R/app/zc:1" --compression zstd:chunked >/dev/null || fail "push zstd:chunked"
"$LAYERCTL" push -q "$R/app/gz:1" "$R/app/esgz:1" --compression estargz >/dev/null || fail "push estargz"
echo "  ok"

for fmt in zc esgz; do
  step "$fmt: eager pull and mount"
  export LAYERFS_ROOT="$WORK/eager-$fmt"
  "$LAYERCTL" pull -q "$R/app/$fmt:1" >/dev/null || fail "$fmt: eager pull"
  mkdir -p "$WORK/m-eager-$fmt"
  "$LAYERCTL" mount --read-only "$R/app/$fmt:1" "$WORK/m-eager-$fmt" >/dev/null || fail "$fmt: eager mount"
  MOUNTS+=("$WORK/m-eager-$fmt")
  listing "$WORK/m-eager-$fmt" >"$WORK/eager-$fmt.list"
  eager_bytes=$(objects_bytes "$LAYERFS_ROOT")

  step "$fmt: lazy pull: TOCs only"
  export LAYERFS_ROOT="$WORK/lazy-$fmt"
  "$LAYERCTL" pull --lazy "$R/app/$fmt:1" >"$WORK/pull-$fmt.out" || fail "$fmt: lazy pull"
  grep -q "3 of them lazily" "$WORK/pull-$fmt.out" || fail "$fmt: lazy pull said: $(cat "$WORK/pull-$fmt.out")"
  n=$(find "$LAYERFS_ROOT/objects" -type f | wc -l)
  [ "$n" = 0 ] || fail "$fmt: lazy pull stored $n objects"
  "$LAYERCTL" images | grep -q "$R/app/$fmt" || fail "$fmt: the lazy image is not listed"
  echo "  ok: no content stored, eager store holds $eager_bytes bytes of objects"

  step "$fmt: mount; the first read fetches one file"
  mkdir -p "$WORK/m-$fmt"
  "$LAYERCTL" mount --no-fetch "$R/app/$fmt:1" "$WORK/m-$fmt" >/dev/null || fail "$fmt: lazy mount"
  MOUNTS+=("$WORK/m-$fmt")
  cmp "$WORK/m-$fmt/usr/bin/blob" "$T/base/usr/bin/blob" || fail "$fmt: usr/bin/blob differs"
  n=$(find "$LAYERFS_ROOT/objects" -type f | wc -l)
  [ "$n" -ge 1 ] && [ "$n" -le 3 ] || fail "$fmt: one open stored $n objects"
  cmp "$WORK/m-$fmt/usr/share/small/f1" "$T/mid/usr/share/small/f1" || fail "$fmt: small/f1 differs"
  n2=$(find "$LAYERFS_ROOT/objects" -type f | wc -l)
  [ "$n2" -gt $((n + 10)) ] || fail "$fmt: small neighbours not fetched together ($n -> $n2 objects)"
  echo "  ok: $n objects after one open, $n2 after a small file (neighbours came along)"

  step "$fmt: the whole tree equals the eager pull's"
  listing "$WORK/m-$fmt" >"$WORK/lazy-$fmt.list"
  diff "$WORK/eager-$fmt.list" "$WORK/lazy-$fmt.list" || fail "$fmt: lazy and eager trees differ"
  cmp "$WORK/m-$fmt/usr/lib/lib-link.so" "$T/mid/usr/lib/lib.so" || fail "$fmt: hard link differs"
  echo "  ok: $(wc -l <"$WORK/lazy-$fmt.list") entries identical"
  "$LAYERCTL" fsck >"$WORK/fsck-$fmt.out" 2>&1 || fail "$fmt: fsck of the lazy store: $(cat "$WORK/fsck-$fmt.out")"

  step "$fmt: a pull without --lazy completes the image (while it is mounted)"
  "$LAYERCTL" pull "$R/app/$fmt:1" >"$WORK/pull-$fmt.out" || fail "$fmt: completing pull"
  grep -q "3 completed" "$WORK/pull-$fmt.out" || fail "$fmt: completing pull said: $(cat "$WORK/pull-$fmt.out")"
  [ -z "$(ls "$LAYERFS_ROOT"/layers/sha256/*/lazy.json 2>/dev/null)" ] || fail "$fmt: lazy.json left"
  "$LAYERCTL" fsck >"$WORK/fsck-$fmt.out" 2>&1 || fail "$fmt: fsck after completion: $(cat "$WORK/fsck-$fmt.out")"
  grep -q "pulled lazily" "$WORK/fsck-$fmt.out" && fail "$fmt: fsck still sees a lazy layer"
  listing "$WORK/m-$fmt" >"$WORK/lazy-$fmt.list"
  diff "$WORK/eager-$fmt.list" "$WORK/lazy-$fmt.list" || fail "$fmt: completed tree differs"
  "$LAYERCTL" pull "$R/app/$fmt:1" | grep -q "nothing to unpack" || fail "$fmt: a third pull did something"
  echo "  ok"
  "$LAYERCTL" umount "$WORK/m-$fmt" >/dev/null
  LAYERFS_ROOT="$WORK/eager-$fmt" "$LAYERCTL" umount "$WORK/m-eager-$fmt" >/dev/null
  MOUNTS=()
done

step "the registry goes away: EIO and a log line; back again: the read succeeds"
export LAYERFS_ROOT="$WORK/lazy-down"
"$LAYERCTL" pull -q --lazy "$R/app/zc:1" >/dev/null || fail "lazy pull"
mkdir -p "$WORK/m-down"
id=$("$LAYERCTL" mount --no-fetch "$R/app/zc:1" "$WORK/m-down") || fail "mount"
MOUNTS+=("$WORK/m-down")
kill "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
set +e
cat "$WORK/m-down/usr/lib/mid.txt" >/dev/null 2>"$WORK/err"
rc=$?
set -e
[ "$rc" != 0 ] && grep -q "Input/output error" "$WORK/err" || fail "read with the registry down: rc $rc, $(cat "$WORK/err")"
log=$(ls "$LAYERFS_ROOT"/containers/*/layerfs.log)
grep -q "lazy fetch of sha256:.*usr/lib/mid.txt" "$log" || fail "no log line: $(cat "$log")"
docker-registry serve "$WORK/registry-lazy/config.yml" >>"$WORK/registry-lazy/log" 2>&1 &
PIDS+=($!)
wait_http "http://$R/v2/"
cmp "$WORK/m-down/usr/lib/mid.txt" "$T/mid/usr/lib/mid.txt" || fail "read after the registry came back"
echo "  ok: $(grep -c "lazy fetch of" "$log") log line(s)"

step "concurrent opens of one missing file share one fetch; a write copies a missing file up"
for i in 1 2 3 4 5 6 7 8; do cmp "$WORK/m-down/usr/lib/lib.so" "$T/mid/usr/lib/lib.so" & done
for i in 1 2 3 4 5 6 7 8; do wait -n || fail "a concurrent read differs"; done
echo appended >>"$WORK/m-down/usr/bin/numbers"
{ cat "$T/base/usr/bin/numbers"; echo appended; } | cmp - "$WORK/m-down/usr/bin/numbers" || fail "copy-up of a missing file"
"$LAYERCTL" umount "$WORK/m-down" >/dev/null
MOUNTS=()
stats=$(grep -o "lazy: [0-9]* objects, [0-9]* bytes fetched in [0-9]* requests" "$log" | tail -1)
requests=$(echo "$stats" | awk '{print $8}')
# mid.txt (with its small neighbours), lib.so once for all eight, numbers.
[ -n "$requests" ] && [ "$requests" -le 3 ] || fail "expected at most 3 requests: '$stats'"
echo "  ok: $stats"

step "hostile TOCs are refused with one line"
export LAYERFS_ROOT="$WORK/hostile"
for mode in bad-digest path-escape offset-past-end; do
  "$PY" "$HERE/hostile_toc.py" "http://$R" app/esgz 1 "$mode" "$mode" || fail "make $mode image"
  set +e
  "$LAYERCTL" pull --lazy "$R/app/esgz:$mode" >/dev/null 2>"$WORK/err"
  rc=$?
  set -e
  [ "$rc" = 1 ] && [ "$(wc -l <"$WORK/err")" = 1 ] || fail "$mode: rc $rc: $(cat "$WORK/err")"
  case $mode in
    bad-digest) pat="digest" ;;
    path-escape) pat="'\.\.'" ;;
    offset-past-end) pat="outside|beyond" ;;
  esac
  grep -Eq "$pat" "$WORK/err" || fail "$mode: $(cat "$WORK/err")"
  echo "  ok: $mode: $(cat "$WORK/err")"
done
[ -z "$(ls "$LAYERFS_ROOT/images" 2>/dev/null)" ] || fail "a hostile image was recorded"

step "a lazy layer serves another image only from the same blob and TOC"
# The poisoned image claims the layer's diff_id with a TOC of its own; a lazy
# pull of the real image must not be served that tree: it is completed
# (the real blob unpacked and compared) and refused.
export LAYERFS_ROOT="$WORK/poison"
"$PY" "$HERE/hostile_toc.py" "http://$R" app/esgz 1 poison poison || fail "make poison image"
"$LAYERCTL" pull -q --lazy "$R/app/esgz:poison" >/dev/null || fail "lazy pull of the poisoned image"
set +e
"$LAYERCTL" pull --lazy "$R/app/esgz:1" >"$WORK/out" 2>"$WORK/err"
rc=$?
set -e
[ "$rc" = 1 ] && [ "$(wc -l <"$WORK/err")" = 1 ] && grep -q "does not unpack to the tree" "$WORK/err" ||
  fail "the real image was served the poisoned tree: rc $rc: $(cat "$WORK/out" "$WORK/err")"
echo "  ok: $(cat "$WORK/err")"

step "mount --fetch-all (now the default) completes the image in the background"
export LAYERFS_ROOT="$WORK/lazy-all"
"$LAYERCTL" pull -q --lazy "$R/app/zc:1" >/dev/null || fail "lazy pull"
mkdir -p "$WORK/m-all"
"$LAYERCTL" mount --read-only --fetch-all "$R/app/zc:1" "$WORK/m-all" >/dev/null || fail "mount --fetch-all"
MOUNTS+=("$WORK/m-all")
for i in $(seq 300); do
  grep -q "background completion done" "$LAYERFS_ROOT"/containers/*/layerfs.log && break
  sleep 0.1
done
grep -q "background completion done in .* s, 3 of 3 layers complete" "$LAYERFS_ROOT"/containers/*/layerfs.log ||
  fail "no completion line: $(cat "$LAYERFS_ROOT"/containers/*/layerfs.log)"
"$LAYERCTL" umount "$WORK/m-all" >/dev/null
MOUNTS=()
"$LAYERCTL" pull "$R/app/zc:1" | grep -q "nothing to unpack" || fail "a pull after the completion did something"
echo "  ok: $("$LAYERCTL" images | tail -1)"
