#!/usr/bin/env bash
# layerctl push under Bearer token auth: the push token is fetched with the
# credentials for "pull,push" on the destination, and a cross-repository
# mount asks for both repositories' scopes in one token request; without
# credentials the push fails naming the registry.
source "$SRCDIR/tests/registry/lib.sh"

PASS_WORD=t0ken-Pa55
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=layerfs push token signer" \
  -keyout "$WORK/token.key" -out "$WORK/token.crt" 2>/dev/null
TOKEN_PORT=$(free_port)
TOKEN_LOG=$WORK/token.log
start_token_server "$TOKEN_PORT" "$WORK/token.key" "$WORK/token.crt" "$TOKEN_LOG" --user "bob:$PASS_WORD"
REG_ACCESSLOG=1 start_registry tok "$(token_yaml "$TOKEN_PORT" "$WORK/token.crt")"
R=127.0.0.1:$REG_tok_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag gz --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" gz "$R/src/app:1" --dest-creds "bob:$PASS_WORD"
"$LAYERCTL" pull -q --creds "bob:$PASS_WORD" "$R/src/app:1" >/dev/null || fail "pull"

step "no credentials: refused, naming the registry"
expect_fail "registry $R: the token service at .* refused anonymous access" "$LAYERCTL" push "$R/src/app:1" "$R/dst/app:1"

step "push with credentials: layers mounted from src/app with a two-scope token"
: >"$TOKEN_LOG"
"$LAYERCTL" --json push --creds "bob:$PASS_WORD" "$R/src/app:1" "$R/dst/app:1" >"$WORK/push.json" \
  || fail "push"
cat "$WORK/push.json"
cat "$TOKEN_LOG"
"$PY" - "$WORK/push.json" <<'PY' || fail "push summary"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mounted"] == 2, d
assert d["uploaded"] == 1 and d["bytes_sent"] < 4096, d  # only the config
PY
# One token request carries both scopes; their order (and the order of the
# actions) is the client's choice.
D='repository:dst/app:(pull,push|push,pull)' S='repository:src/app:pull'
grep -qE "user=bob scope=($D,$S|$S,$D) service=test-registry status=200" \
  "$TOKEN_LOG" || fail "no token asked for both repositories"
grep -Eq '"POST /v2/dst/app/blobs/uploads/\?[^"]*mount=sha256[^"]*" 201' "$REG_tok_LOG" \
  || fail "the registry did not mount"
skopeo inspect --raw --tls-verify=false --creds "bob:$PASS_WORD" "docker://$R/dst/app:1" \
  | sha256sum | grep -q "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest"][7:])' "$WORK/push.json")" \
  || fail "the registry serves another manifest"
echo PASS
