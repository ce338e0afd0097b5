#!/usr/bin/env bash
# TLS registry with a CA the test creates: verification on by default (and no
# plain-HTTP fallback on loopback when TLS fails), --cert-dir, --tls-verify=false.
source "$SRCDIR/tests/registry/lib.sh"

make_ca "$WORK/ca"
REG_ACCESSLOG=1 start_registry tls "" "$(tls_yaml "$WORK/ca")"
R=127.0.0.1:$REG_tls_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --tag gz --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" gz "$R/app/gz:1"

step "unknown CA: a TLS failure, no fallback to plain HTTP"
expect_fail "TLS failure talking to $R: .*(certificate|verify).*--cert-dir" "$REGFETCH" "$R/app/gz:1"

step "--cert-dir with the CA"
"$REGFETCH" --cert-dir "$WORK/ca/certs" "$R/app/gz:1" >"$WORK/out.json" || fail "--cert-dir"
grep -q '"bytes"' "$WORK/out.json" || fail "no layers fetched"

# Over TLS the registry (Go) offers HTTP/2 through ALPN, and libcurl takes it.
grep -qE '"GET /v2/app/gz/blobs/sha256:[0-9a-f]+ HTTP/2.0" 200' "$REG_tls_LOG" || {
  grep "GET /v2" "$REG_tls_LOG" | tail -3
  fail "blobs were not fetched over HTTP/2"
}

step "--tls-verify=false"
"$REGFETCH" --tls-verify=false "$R/app/gz:1" >/dev/null || fail "--tls-verify=false"

step "a CA for another host does not help"
make_ca "$WORK/other"
expect_fail "TLS failure" "$REGFETCH" --cert-dir "$WORK/other/certs" "$R/app/gz:1"
expect_fail "cert-dir $WORK/nope" "$REGFETCH" --cert-dir "$WORK/nope" "$R/app/gz:1"

step "layerctl pull over TLS"
expect_fail "TLS failure talking to $R" "$LAYERCTL" pull -q "$R/app/gz:1"
"$LAYERCTL" pull -q --cert-dir "$WORK/ca/certs" "$R/app/gz:1" >/dev/null || fail "pull --cert-dir"
"$LAYERCTL" images | grep -q "$R/app/gz" || fail "image not listed"
"$LAYERCTL" rmi "$R/app/gz:1" >/dev/null || fail "rmi"
"$LAYERCTL" pull -q --tls-verify=false "$R/app/gz:1" >/dev/null || fail "pull --tls-verify=false"
echo PASS
