#!/usr/bin/env bash
# Background completion of lazily pulled images (issue 20) against a real
# registry and real mounts: `layerctl mount` of a lazy image completes it in
# the background by default (each whole blob verified, the layer an ordinary
# one after, the tree the eager pull's); --no-fetch fetches only what is
# opened; what one mount opened is fetched first by the next mount of the
# same blob (the access list outlives rmi and gc); the rate limit holds the
# stream back; kill -9 of the daemon mid-way keeps what was verified, and a
# restart completes the rest with fsck clean; a concurrent `layerctl pull`
# and the daemon complete the same layers without harm; Bearer tokens that
# expire within a second are refreshed during a long completion.
source "$SRCDIR/tests/registry/lib.sh"
mount_test
listing() { (cd "$1" && "$PY" "$HERE/tree_list.py" .); }
# object_of FILE: the store path of FILE's content object.
object_of() {
  local h
  h=$(sha256sum "$1" | cut -c1-64)
  echo "$LAYERFS_ROOT/objects/sha256/${h:0:2}/${h:2}"
}
lazy_layers() { ls "$LAYERFS_ROOT"/layers/sha256/*/lazy.json 2>/dev/null | wc -l; }
daemon_log() { cat "$LAYERFS_ROOT"/containers/*/layerfs.log; }
# wait_done: until the daemon logs the end of its background completion (60 s).
wait_done() {
  local i
  for i in $(seq 600); do
    daemon_log | grep -q "background completion done" && return 0
    sleep 0.1
  done
  fail "no completion within 60 s: $(daemon_log)"
}
fsck_clean() {
  "$LAYERCTL" fsck >"$WORK/fsck.out" 2>&1 || fail "$1: fsck: $(cat "$WORK/fsck.out")"
}

lazy_setup

step "a plain image pushed again as zstd:chunked and eStargz"
push_sample_gz
export LAYERFS_ROOT="$WORK/eager"
"$LAYERCTL" pull -q "$R/app/gz:1" >/dev/null || fail "pull the plain image"
"$LAYERCTL" push -q "$R/app/gz:1" "$R/app/zc:1" --compression zstd:chunked >/dev/null || fail "push zstd:chunked"
"$LAYERCTL" push -q "$R/app/gz:1" "$R/app/esgz:1" --compression estargz >/dev/null || fail "push estargz"
mkdir -p "$WORK/m-eager"
"$LAYERCTL" mount --read-only "$R/app/gz:1" "$WORK/m-eager" >/dev/null || fail "eager mount"
listing "$WORK/m-eager" >"$WORK/eager.list"
"$LAYERCTL" umount "$WORK/m-eager" >/dev/null
echo "  ok"

for fmt in zc esgz; do
  step "$fmt: mount completes a lazy image in the background by default"
  export LAYERFS_ROOT="$WORK/default-$fmt"
  "$LAYERCTL" pull -q --lazy "$R/app/$fmt:1" >/dev/null || fail "$fmt: lazy pull"
  [ "$(lazy_layers)" = 3 ] || fail "$fmt: $(lazy_layers) lazy layers after pull --lazy"
  mkdir -p "$WORK/m-$fmt"
  "$LAYERCTL" mount "$R/app/$fmt:1" "$WORK/m-$fmt" >/dev/null || fail "$fmt: mount"
  MOUNTS+=("$WORK/m-$fmt")
  wait_done
  daemon_log | grep -q "background completion done in .* s, 3 of 3 layers complete" ||
    fail "$fmt: $(daemon_log)"
  [ "$(lazy_layers)" = 0 ] || fail "$fmt: $(lazy_layers) layers still lazy"
  fsck_clean "$fmt"
  grep -q "pulled lazily" "$WORK/fsck.out" && fail "$fmt: fsck still sees a lazy layer"
  listing "$WORK/m-$fmt" >"$WORK/$fmt.list"
  diff "$WORK/eager.list" "$WORK/$fmt.list" || fail "$fmt: completed tree differs from the eager one"
  "$LAYERCTL" pull "$R/app/$fmt:1" | grep -q "nothing to unpack" || fail "$fmt: pull found work left"
  "$LAYERCTL" umount "$WORK/m-$fmt" >/dev/null
  MOUNTS=()
  echo "  ok: $(daemon_log | grep -o "background completion done.*")"
done

step "--no-fetch: only what is opened"
export LAYERFS_ROOT="$WORK/order"
"$LAYERCTL" pull -q --lazy "$R/app/zc:1" >/dev/null || fail "lazy pull"
mkdir -p "$WORK/m-order"
id=$("$LAYERCTL" mount --no-fetch --read-only "$R/app/zc:1" "$WORK/m-order") || fail "mount --no-fetch"
MOUNTS+=("$WORK/m-order")
cmp "$WORK/m-order/usr/bin/numbers" "$T/base/usr/bin/numbers" || fail "usr/bin/numbers differs"
sleep 1
[ -e "$(object_of "$T/base/usr/bin/numbers")" ] || fail "the opened file's object is missing"
[ -e "$(object_of "$T/base/usr/bin/blob")" ] && fail "--no-fetch fetched usr/bin/blob"
[ "$(lazy_layers)" = 3 ] || fail "--no-fetch completed a layer"
"$LAYERCTL" umount "$WORK/m-order" >/dev/null
MOUNTS=()
ls "$LAYERFS_ROOT"/access/sha256-* >/dev/null 2>&1 || fail "no access list recorded"
grep -q "sha256:$(sha256sum "$T/base/usr/bin/numbers" | cut -c1-64)" "$LAYERFS_ROOT"/access/sha256-* ||
  fail "the access list lacks usr/bin/numbers"
echo "  ok: $(cat "$LAYERFS_ROOT"/access/sha256-* | wc -l) object(s) in the access lists"

step "the next mount of the same image fetches what was opened first"
"$LAYERCTL" rm "$id" >/dev/null || fail "rm the container"
"$LAYERCTL" rmi "$R/app/zc:1" >/dev/null || fail "rmi"
"$LAYERCTL" gc >/dev/null || fail "gc"
[ -e "$(object_of "$T/base/usr/bin/numbers")" ] && fail "gc kept the object"
"$LAYERCTL" pull -q --lazy "$R/app/zc:1" >/dev/null || fail "lazy pull again"
rm -f "$LAYERFS_ROOT"/containers/*/layerfs.log
"$LAYERCTL" mount --fetch-rate 100K "$R/app/zc:1" "$WORK/m-order" >/dev/null || fail "mount"
MOUNTS+=("$WORK/m-order")
for i in $(seq 50); do
  [ -e "$(object_of "$T/base/usr/bin/numbers")" ] && break
  sleep 0.1
done
[ -e "$(object_of "$T/base/usr/bin/numbers")" ] || fail "the recorded file was not fetched first: $(daemon_log)"
# At 100 KiB/s the stream is still in the top or mid layer: the base layer's
# first file is not in yet.
[ -e "$(object_of "$T/base/usr/bin/blob")" ] && fail "usr/bin/blob came first: no rate limit?"
[ "$(lazy_layers)" -ge 2 ] || fail "the rate limit did not hold the completion back"
"$LAYERCTL" umount "$WORK/m-order" >/dev/null
MOUNTS=()
[ "$(lazy_layers)" -ge 2 ] || fail "unmounted mid-way: layers not lazy"
fsck_clean "unmounted mid-way"
echo "  ok: the recorded object in at once; $(lazy_layers) layers still lazy after the unmount"

step "kill -9 of the daemon mid-way: what was verified stays; a restart completes the rest"
export LAYERFS_ROOT="$WORK/kill"
"$LAYERCTL" pull -q --lazy "$R/app/zc:1" >/dev/null || fail "lazy pull"
mkdir -p "$WORK/m-kill"
"$LAYERCTL" mount --name k --fetch-rate 300K "$R/app/zc:1" "$WORK/m-kill" >/dev/null || fail "mount"
MOUNTS+=("$WORK/m-kill")
cmp "$WORK/m-kill/usr/lib/mid.txt" "$T/mid/usr/lib/mid.txt" || fail "mid.txt differs"
sleep 1.5
pid=$("$PY" -c 'import json,sys,glob; print(json.load(open(glob.glob(sys.argv[1]+"/containers/*/container.json")[0]))["pid"])' "$LAYERFS_ROOT")
kill -9 "$pid"
for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
[ "$(lazy_layers)" -ge 1 ] || fail "everything was complete before the kill: rate limit?"
[ -e "$(object_of "$T/mid/usr/lib/mid.txt")" ] || fail "the verified object of mid.txt is gone"
"$LAYERCTL" umount "$WORK/m-kill" >/dev/null 2>&1 || true
fsck_clean "after kill -9"
before=$(lazy_layers)
"$LAYERCTL" start k >/dev/null || fail "start after kill -9"
wait_done
daemon_log | grep -q "$before of $before layers complete" || fail "restart: $(daemon_log)"
[ "$(lazy_layers)" = 0 ] || fail "restart: $(lazy_layers) layers still lazy"
fsck_clean "after the restart"
listing "$WORK/m-kill" >"$WORK/kill.list"
diff "$WORK/eager.list" "$WORK/kill.list" || fail "tree after kill -9 and restart differs"
"$LAYERCTL" umount "$WORK/m-kill" >/dev/null
MOUNTS=()
echo "  ok: $before layer(s) lazy after the kill, none after the restart"

step "a concurrent layerctl pull and the background complete the same layers"
export LAYERFS_ROOT="$WORK/both"
"$LAYERCTL" pull -q --lazy "$R/app/zc:1" >/dev/null || fail "lazy pull"
mkdir -p "$WORK/m-both"
"$LAYERCTL" mount --fetch-rate 1M "$R/app/zc:1" "$WORK/m-both" >/dev/null || fail "mount"
MOUNTS+=("$WORK/m-both")
sleep 0.5
"$LAYERCTL" pull "$R/app/zc:1" >"$WORK/pull.out" 2>&1 || fail "concurrent pull: $(cat "$WORK/pull.out")"
cmp "$WORK/m-both/usr/bin/blob" "$T/base/usr/bin/blob" || fail "usr/bin/blob differs"
wait_done
daemon_log | grep -q "3 of 3 layers complete" || fail "background beside a pull: $(daemon_log)"
daemon_log | grep -q "stays lazy" && fail "a completion failed: $(daemon_log)"
[ "$(lazy_layers)" = 0 ] || fail "$(lazy_layers) layers still lazy"
fsck_clean "pull and background"
"$LAYERCTL" umount "$WORK/m-both" >/dev/null
MOUNTS=()
echo "  ok: pull said: $(tail -1 "$WORK/pull.out")"

step "Bearer tokens that expire within a second are refreshed during the completion"
PASS_WORD=t0ken-Pa55
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=layerfs test token signer" \
  -keyout "$WORK/token.key" -out "$WORK/token.crt" 2>/dev/null
TOKEN_PORT=$(free_port)
start_token_server "$TOKEN_PORT" "$WORK/token.key" "$WORK/token.crt" "$WORK/token.log" \
  --user "bob:$PASS_WORD" --expires 1
start_registry tok "$(token_yaml "$TOKEN_PORT" "$WORK/token.crt")"
RT=127.0.0.1:$REG_tok_PORT
export LAYERFS_ROOT="$WORK/tok"
echo "$PASS_WORD" | "$LAYERCTL" login -u bob --password-stdin "$RT" >/dev/null || fail "login"
LAYERFS_ROOT="$WORK/eager" "$LAYERCTL" push -q "$R/app/gz:1" "$RT/private/zc:1" \
  --compression zstd:chunked >/dev/null || fail "push to the token registry"
"$LAYERCTL" pull -q --lazy "$RT/private/zc:1" >/dev/null || fail "lazy pull with a token"
[ "$(lazy_layers)" = 3 ] || fail "token registry: $(lazy_layers) lazy layers"
: >"$WORK/token.log"
mkdir -p "$WORK/m-tok"
"$LAYERCTL" mount --fetch-rate 1M "$RT/private/zc:1" "$WORK/m-tok" >/dev/null || fail "mount"
MOUNTS+=("$WORK/m-tok")
sleep 1.2
cmp "$WORK/m-tok/usr/lib/mid.txt" "$T/mid/usr/lib/mid.txt" || fail "on-demand read with a stale token"
wait_done
daemon_log | grep -q "3 of 3 layers complete" || fail "token registry: $(daemon_log)"
[ "$(lazy_layers)" = 0 ] || fail "token registry: $(lazy_layers) layers still lazy"
fsck_clean "token registry"
tokens=$(count_lines "user=bob .*status=200" "$WORK/token.log")
[ "$tokens" -ge 2 ] || fail "expected token refreshes, got $tokens: $(cat "$WORK/token.log")"
"$LAYERCTL" umount "$WORK/m-tok" >/dev/null
MOUNTS=()
echo "  ok: $tokens tokens issued during the mount"
