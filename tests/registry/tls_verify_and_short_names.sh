#!/usr/bin/env bash
# Registry flags and names as skopeo and podman spell them: a bare
# --tls-verify means true (it does not swallow the reference); an explicit
# --tls-verify=true keeps to HTTPS even on loopback and says so; short names
# follow registries.conf's unqualified-search-registries.
source "$SRCDIR/tests/registry/lib.sh"

start_registry plain
R=127.0.0.1:$REG_plain_PORT
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression gzip --tag v1 --layer "$WORK/t/base" --layer "$WORK/t/top"
push "$WORK/oci" v1 "$R/team/app:v1"

step "a bare --tls-verify is true, not a usage error that swallows the reference"
rc=0
out=$("$LAYERCTL" pull --tls-verify "$R/team/app:v1" 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 1 ] || fail "bare --tls-verify: exit $rc (want 1: HTTPS refused), '$out'"
echo "$out" | grep -q "plain HTTP not tried" || fail "bare --tls-verify: '$out'"
echo "  ok: $out"

step "--tls-verify=true on loopback: HTTPS only, and the error says plain HTTP was not tried"
expect_fail "^layerctl: pull: '$R/team/app:v1': registry $R: .*\(--tls-verify=true: plain HTTP not tried\)$" \
  "$LAYERCTL" pull --tls-verify=true "$R/team/app:v1"
[ ! -e "$LAYERFS_ROOT/images" ] || [ -z "$(ls -A "$LAYERFS_ROOT/images")" ] || fail "an image was recorded"
expect_fail "wants true or false, not 'maybe'" "$LAYERCTL" pull --tls-verify=maybe "$R/team/app:v1"

step "without the flag loopback falls back to plain HTTP as before"
"$LAYERCTL" -q pull "$R/team/app:v1" >/dev/null || fail "plain pull"
"$LAYERCTL" -q pull --tls-verify=false "$R/team/app:v1" >/dev/null || fail "pull --tls-verify=false"

step "short names: registries.conf's unqualified-search-registries, in order"
rm -rf "$LAYERFS_ROOT"
down=$(free_port)  # nothing listens there: the next registry is tried
cat >"$WORK/registries.conf" <<CONF
# a comment
unqualified-search-registries = ["127.0.0.1:$down", "$R"]  # trailing comment

[[registry]]
location = "example.invalid"
CONF
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
"$LAYERCTL" pull team/app:v1 >"$WORK/pull.out" 2>&1 || { cat "$WORK/pull.out"; fail "short name pull"; }
"$LAYERCTL" --json images | grep -q "\"name\": \"$R/team/app:v1\"" || fail "not recorded as $R/team/app:v1"
expect_fail "team/nope:v1.*127.0.0.1:$down.*$R" "$LAYERCTL" pull team/nope:v1
# A fully qualified name does not search.
expect_fail "127.0.0.1:$down/team/app:v1" "$LAYERCTL" pull "127.0.0.1:$down/team/app:v1"
unset CONTAINERS_REGISTRIES_CONF
echo "PASS"
