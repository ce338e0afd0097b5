#!/usr/bin/env bash
# htpasswd (Basic) auth over TLS: 401 messages name the registry and the
# credential sources tried; --creds; login/logout write and read the same
# auth.json as podman; $REGISTRY_AUTH_FILE and ~/.docker/config.json; no
# secret is ever printed.
source "$SRCDIR/tests/registry/lib.sh"
command -v htpasswd >/dev/null || { echo "SKIP: htpasswd (apache2-utils) not installed"; exit 77; }

PASS_WORD=s3cr3t-Pa55
htpasswd -Bbn alice "$PASS_WORD" >"$WORK/htpasswd" 2>/dev/null
make_ca "$WORK/ca"
start_registry basic "$(printf 'auth:\n  htpasswd:\n    realm: test-realm\n    path: %s\n' "$WORK/htpasswd")" \
  "$(tls_yaml "$WORK/ca")"
R=127.0.0.1:$REG_basic_PORT
CERTS=(--cert-dir "$WORK/ca/certs")
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag gz --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" gz "$R/private/app:1" --dest-creds "alice:$PASS_WORD"
OUT=$WORK/all-output.txt  # everything the commands print, checked for the secret at the end
run() { "$@" >>"$OUT" 2>&1; }

step "anonymous: 401 naming the registry and the sources tried"
expect_fail "registry $R: HTTP 401 unauthorized .*tried anonymous; no credentials found in: $XDG_RUNTIME_DIR/containers/auth.json, $HOME/.config/containers/auth.json, $HOME/.docker/config.json" \
  "$REGFETCH" "${CERTS[@]}" "$R/private/app:1"

step "--creds"
expect_fail "HTTP 401 unauthorized .*tried credentials from --creds" "$REGFETCH" "${CERTS[@]}" --creds alice:wrong "$R/private/app:1"
run "$REGFETCH" "${CERTS[@]}" --creds "alice:$PASS_WORD" "$R/private/app:1" || fail "--creds"
run "$LAYERCTL" pull -q "${CERTS[@]}" --creds "alice:$PASS_WORD" "$R/private/app:1" || fail "pull --creds"

step "layerctl push over TLS with Basic auth"
expect_fail "registry $R: HTTP 401 unauthorized" \
  "$LAYERCTL" push "${CERTS[@]}" "$R/private/app:1" "$R/private/copy:1"
expect_fail "TLS failure talking to $R" \
  "$LAYERCTL" push --creds "alice:$PASS_WORD" "$R/private/app:1" "$R/private/copy:1"
run "$LAYERCTL" push "${CERTS[@]}" --creds "alice:$PASS_WORD" "$R/private/app:1" "$R/private/copy:1" ||
  fail "push --creds --cert-dir"
id1=$("$LAYERCTL" images --json | "$PY" -c 'import json,sys; print([i["id"] for i in json.load(sys.stdin) if i["name"].endswith("/private/app:1")][0])')
LAYERFS_ROOT=$WORK/store2 run "$LAYERCTL" pull -q "${CERTS[@]}" --creds "alice:$PASS_WORD" "$R/private/copy:1" ||
  fail "pull of the pushed copy"
id2=$(LAYERFS_ROOT=$WORK/store2 "$LAYERCTL" images --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
[ "$id1" = "$id2" ] || fail "pushed image id $id2, want $id1"
"$LAYERCTL" rmi "$R/private/app:1" >/dev/null

step "layerctl login: refuses bad credentials, stores good ones in auth.json (0600)"
AUTH=$XDG_RUNTIME_DIR/containers/auth.json
echo wrong | expect_fail "registry $R refused the credentials from --creds" \
  "$LAYERCTL" login "${CERTS[@]}" -u alice --password-stdin "$R"
[ ! -e "$AUTH" ] || fail "a failed login wrote $AUTH"
echo "$PASS_WORD" | run "$LAYERCTL" login "${CERTS[@]}" -u alice --password-stdin "$R" || fail "login"
[ "$(stat -c %a "$AUTH")" = 600 ] || fail "auth.json mode $(stat -c %a "$AUTH")"
"$PY" - "$AUTH" "$R" "$PASS_WORD" <<'PY' || fail "auth.json format"
import base64, json, sys
d = json.load(open(sys.argv[1]))
assert base64.b64decode(d["auths"][sys.argv[2]]["auth"]).decode() == "alice:" + sys.argv[3]
PY
[ "$("$LAYERCTL" login --get-login "$R")" = alice ] || fail "--get-login"

step "pull with the stored credentials (auth.json, then REGISTRY_AUTH_FILE, then docker config)"
run "$REGFETCH" "${CERTS[@]}" "$R/private/app:1" || fail "regfetch with auth.json"
run "$LAYERCTL" pull -q "${CERTS[@]}" "$R/private/app:1" || fail "pull with auth.json"
mv "$AUTH" "$WORK/elsewhere.json"
REGISTRY_AUTH_FILE=$WORK/elsewhere.json run "$REGFETCH" "${CERTS[@]}" "$R/private/app:1" || fail "REGISTRY_AUTH_FILE"
run "$REGFETCH" "${CERTS[@]}" --authfile "$WORK/elsewhere.json" "$R/private/app:1" || fail "--authfile"
mkdir -p "$HOME/.docker"
cp "$WORK/elsewhere.json" "$HOME/.docker/config.json"
run "$REGFETCH" "${CERTS[@]}" "$R/private/app:1" || fail "docker config.json"
# Credentials for this registry are not offered to another one.
start_registry other "$(printf 'auth:\n  htpasswd:\n    realm: other\n    path: %s\n' "$WORK/htpasswd")" "$(tls_yaml "$WORK/ca")"
expect_fail "tried anonymous" "$REGFETCH" "${CERTS[@]}" "127.0.0.1:$REG_other_PORT/private/app:1"
rm "$HOME/.docker/config.json"

step "logout"
REGISTRY_AUTH_FILE=$WORK/elsewhere.json run "$LAYERCTL" logout "$R" || fail "logout"
REGISTRY_AUTH_FILE=$WORK/elsewhere.json expect_fail "not logged in" "$LAYERCTL" logout "$R"
expect_fail "HTTP 401" "$REGFETCH" "${CERTS[@]}" --authfile "$WORK/elsewhere.json" "$R/private/app:1"

step "redirects to another host do not get the credentials"
# Plain-HTTP htpasswd registry; proxy "front" answers blob GETs with a 307 to
# proxy "cdn" (another origin), which reaches the registry with its own
# credentials, like a presigned URL. The client must not send Authorization
# to "cdn".
start_registry bplain "$(printf 'auth:\n  htpasswd:\n    realm: test-realm\n    path: %s\n' "$WORK/htpasswd")"
push "$WORK/oci" gz "127.0.0.1:$REG_bplain_PORT/private/app:1" --dest-creds "alice:$PASS_WORD"
start_proxy cdn "$REG_bplain_PORT" --upstream-auth "alice:$PASS_WORD"
start_proxy front "$REG_bplain_PORT" --redirect-blobs "$PROXY_cdn_PORT"
run "$REGFETCH" --creds "alice:$PASS_WORD" "127.0.0.1:$PROXY_front_PORT/private/app:1" || fail "fetch through redirect"
cat "$WORK/proxy-front.log" "$WORK/proxy-cdn.log"
grep -q "manifests/1 .* auth=yes -> 200" "$WORK/proxy-front.log" || fail "no authorized manifest request"
grep -q " -> 307 redirect" "$WORK/proxy-front.log" || fail "no redirect"
[ "$(count_lines "blobs/sha256:.* -> 200" "$WORK/proxy-cdn.log")" -ge 2 ] || fail "blobs not fetched from the redirect target"
if grep -q "auth=yes" "$WORK/proxy-cdn.log"; then fail "Authorization was sent to another host"; fi

step "no secret in any output"
if grep -q -- "$PASS_WORD" "$OUT"; then fail "the password was printed"; fi
if grep -rq -- "$PASS_WORD" "$LAYERFS_ROOT"; then fail "the password is in the store"; fi
echo PASS
