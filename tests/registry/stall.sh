#!/usr/bin/env bash
# Registries that stall, trickle or lie end the pull with one line naming the
# registry and the blob, and leave tmp/ empty: a blob that sends 1000 bytes
# and then nothing, a blob and a manifest sent at a few bytes/s, a
# Content-Length shorter than the body; and credentials never go to a
# plain-HTTP token realm on another host unless the registry is marked
# --insecure-registry. The speed floor and retries are set low here
# (--low-speed-time 2 --retries 1) so that each case takes seconds.
source "$SRCDIR/tests/registry/lib.sh"

start_registry plain
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression gzip --tag gz --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" gz "127.0.0.1:$REG_plain_PORT/app/gz:1"
FLOOR=(--low-speed-limit 1024 --low-speed-time 2 --retries 1)

# tmp_empty: the store's tmp/ holds nothing.
tmp_empty() {
  [ -z "$(ls -A "$LAYERFS_ROOT/tmp" 2>/dev/null)" ] || fail "tmp/ not empty: $(ls -A "$LAYERFS_ROOT/tmp")"
}
# slow_pull NAME PATTERN PROXY_OPTS...: a pull through a proxy started with
# PROXY_OPTS fails with PATTERN (the proxy's address is $P in it) within 20 s,
# leaving tmp/ empty and no image.
slow_pull() {
  local name=$1 pattern=$2 t0 ms port
  shift 2
  start_proxy "$name" "$REG_plain_PORT" "$@"
  port=PROXY_${name}_PORT
  P=127.0.0.1:${!port}
  t0=$(date +%s%N)
  expect_fail "${pattern//@P@/$P}" "$LAYERCTL" pull -q "${FLOOR[@]}" "$P/app/gz:1"
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "  the pull ended after $ms ms"
  [ "$ms" -lt 20000 ] || fail "the pull took $ms ms"
  tmp_empty
  if "$LAYERCTL" images | grep -q "app/gz"; then fail "a failed pull published the image"; fi
}

step "a blob that sends 1000 bytes and then nothing"
slow_pull stall "^layerctl: pull: '@P@/app/gz:1': registry @P@: @P@ sent less than 1024 bytes/s for 2 s .*downloading blob sha256:[0-9a-f]{64} at byte [0-9]+ of [0-9]+, 2 attempts\)$" \
  --stall-after 1000

step "a blob sent at 900 bytes/s"
slow_pull trickle "registry @P@: @P@ sent less than 1024 bytes/s for 2 s .*downloading blob sha256:" --trickle 900

step "a manifest sent at 2 bytes/s"
slow_pull mtrickle "registry @P@: @P@ sent less than 1024 bytes/s for 2 s .*\(reading manifest '@P@/app/gz:1'\)" \
  --trickle-manifest 2

step "a Content-Length shorter than the body"
start_proxy short "$REG_plain_PORT" --short-length 100
P=127.0.0.1:$PROXY_short_PORT
out=$("$LAYERCTL" pull -q "${FLOOR[@]}" "$P/app/gz:1" 2>&1 >/dev/null) && fail "pull with a short Content-Length succeeded"
echo "  $out"
[[ "$out" != *"HTTP/0.9"* ]] || fail "curl's HTTP/0.9 message reached the user"
echo "$out" | grep -Eq "registry $P: blob sha256:[0-9a-f]{64}: the response declares Content-Length [0-9]+ where [0-9]+ bytes are due" \
  || fail "the message does not say what the registry did wrong"
tmp_empty

step "the defaults are what --help says"
"$LAYERCTL" pull --help | grep -q -- "--low-speed-limit BYTES, --low-speed-time SECONDS" || fail "--help lacks the speed floor"
"$LAYERCTL" pull --help | grep -q -- "--retries N" || fail "--help lacks --retries"
expect_fail "wants a number" "$LAYERCTL" pull --retries x "127.0.0.1:$REG_plain_PORT/app/gz:1"

step "no credentials to a plain-HTTP token realm on another host"
ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.[0-9.]+$' | grep -v '^127\.' | head -1 || true)
if [ -z "$ip" ]; then
  echo "  (no non-loopback IPv4 address: part skipped)"
  echo PASS
  exit 0
fi
PASS_WORD=s3cret-Pa55
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=layerfs test token signer" \
  -keyout "$WORK/token.key" -out "$WORK/token.crt" 2>/dev/null
TOKEN_PORT=$(free_port)
TOKEN_LOG=$WORK/token.log
TOKEN_BIND=$ip "$PY" "$HERE/token_server.py" "$TOKEN_PORT" "$WORK/token.key" "$WORK/token.crt" test-issuer \
  test-registry "$TOKEN_LOG" --user "bob:$PASS_WORD" --anonymous 2>"$WORK/token.err" &
PIDS+=($!)
wait_http "http://$ip:$TOKEN_PORT/token"
start_registry tok "$(printf 'auth:\n  token:\n    realm: http://%s:%s/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: %s\n' \
  "$ip" "$TOKEN_PORT" "$WORK/token.crt")"
R=127.0.0.1:$REG_tok_PORT
push "$WORK/oci" gz "$R/private/app:1" --dest-creds "bob:$PASS_WORD"
: >"$TOKEN_LOG"
expect_fail "^layerctl: pull: '$R/private/app:1': registry $R names the plain-HTTP token realm $ip:$TOKEN_PORT; refusing to send the credentials from --creds there in clear text" \
  "$LAYERCTL" pull -q --creds "bob:$PASS_WORD" "$R/private/app:1"
cat "$TOKEN_LOG"
grep -q "user=bob" "$TOKEN_LOG" && fail "the credentials went to the plain-HTTP realm"
tmp_empty
step "... unless the registry is marked --insecure-registry"
"$LAYERCTL" pull -q --insecure-registry "$R" --creds "bob:$PASS_WORD" "$R/private/app:1" >/dev/null \
  || fail "pull from a registry marked insecure"
grep -q "user=bob scope=repository:private/app:pull" "$TOKEN_LOG" || fail "no credentialed token fetch"
echo PASS
