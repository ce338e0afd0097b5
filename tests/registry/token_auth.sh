#!/usr/bin/env bash
# Bearer token auth: the registry's `auth: token:` with a token server the test
# runs (tokens signed with a certificate the test makes). Anonymous and
# credentialed token fetch (realm/service/scope from WWW-Authenticate), one
# token per pull (cached), refresh when the announced lifetime ends and when
# the registry rejects a token (401), refused credentials named clearly.
source "$SRCDIR/tests/registry/lib.sh"

PASS_WORD=t0ken-Pa55
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=layerfs test token signer" \
  -keyout "$WORK/token.key" -out "$WORK/token.crt" 2>/dev/null
TOKEN_PORT=$(free_port)
TOKEN_LOG=$WORK/token.log
start_token_server() {  # extra token_server.py options
  "$PY" "$HERE/token_server.py" "$TOKEN_PORT" "$WORK/token.key" "$WORK/token.crt" test-issuer \
    test-registry "$TOKEN_LOG" --user "bob:$PASS_WORD" --anonymous "$@" 2>"$WORK/token.err" &
  TOKEN_PID=$!
  PIDS+=($TOKEN_PID)
  wait_http "http://127.0.0.1:$TOKEN_PORT/token"
  : >"$TOKEN_LOG"
}
restart_token_server() {
  kill "$TOKEN_PID"
  wait "$TOKEN_PID" 2>/dev/null || true
  start_token_server "$@"
}
start_token_server
start_registry tok "$(printf 'auth:\n  token:\n    realm: http://127.0.0.1:%s/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: %s\n' \
  "$TOKEN_PORT" "$WORK/token.crt")"
R=127.0.0.1:$REG_tok_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag gz --layer "$WORK/t/base" --layer "$WORK/t/mid" --layer "$WORK/t/top"
# skopeo pushes with a push token: grant it by giving the credentials.
push "$WORK/oci" gz "$R/public/app:1" --dest-creds "bob:$PASS_WORD"
push "$WORK/oci" gz "$R/private/app:1" --dest-creds "bob:$PASS_WORD"

step "anonymous token for a public repository: one token for the whole pull"
: >"$TOKEN_LOG"
"$REGFETCH" --jobs 3 "$R/public/app:1" >/dev/null || fail "anonymous pull of public/app"
cat "$TOKEN_LOG"
[ "$(count_lines 'user=- scope=repository:public/app:pull service=test-registry status=200' "$TOKEN_LOG")" -eq 1 ] \
  || fail "expected exactly one anonymous token fetch"
[ "$(wc -l <"$TOKEN_LOG")" -eq 1 ] || fail "more token fetches than needed"

step "private repository: anonymous is refused, naming the sources tried"
expect_fail "registry $R: HTTP 401 unauthorized for manifest '$R/private/app:1'; tried anonymous; no credentials found in:" \
  "$REGFETCH" "$R/private/app:1"

step "credentialed token"
: >"$TOKEN_LOG"
"$REGFETCH" --creds "bob:$PASS_WORD" "$R/private/app:1" >/dev/null || fail "pull with --creds"
grep -q "user=bob scope=repository:private/app:pull service=test-registry status=200" "$TOKEN_LOG" \
  || fail "no credentialed token fetch logged"
expect_fail "the token service at 127.0.0.1:$TOKEN_PORT refused the credentials from --creds \\(HTTP 401\\)" \
  "$REGFETCH" --creds bob:wrong "$R/private/app:1"
echo "$PASS_WORD" | "$LAYERCTL" login -u bob --password-stdin "$R" >/dev/null || fail "login (token)"
"$LAYERCTL" pull -q "$R/private/app:1" >/dev/null || fail "layerctl pull with the stored login"
"$LAYERCTL" images | grep -q "$R/private/app" || fail "image not listed"

step "a token the registry rejects (expired) is refreshed once, on the 401"
restart_token_server --expired-first 1
"$REGFETCH" "$R/public/app:1" >/dev/null || fail "no recovery from an expired token"
cat "$TOKEN_LOG"
[ "$(count_lines 'scope=repository:public/app:pull .*status=200' "$TOKEN_LOG")" -eq 2 ] \
  || fail "expected a second token after the 401"

step "a token whose announced lifetime ran out is renewed before use"
restart_token_server --expires 1
start_proxy slow "$REG_tok_PORT" --delay-blobs 1.5
"$REGFETCH" --jobs 1 "127.0.0.1:$PROXY_slow_PORT/public/app:1" >/dev/null || fail "pull through slow proxy"
cat "$TOKEN_LOG"
n=$(count_lines 'scope=repository:public/app:pull .*status=200' "$TOKEN_LOG")
[ "$n" -ge 3 ] || fail "expected the token to be renewed (got $n fetches for 4 slow requests)"
echo PASS
