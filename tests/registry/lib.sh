# Shared helpers for the registry integration tests (sourced, bash).
# Starts a real CNCF registry (Debian's docker-registry) on 127.0.0.1 with a
# free port and temporary storage, builds images with mkimage and pushes them
# with skopeo. Every process started here is killed by pid in the EXIT trap.
set -euo pipefail

: "${LAYERCTL:?run through meson test}" "${SRCDIR:?}" "${BUILDDIR:?}"
MKIMAGE="${MKIMAGE:-$BUILDDIR/tests/fixtures/mkimage}"
REGFETCH="$BUILDDIR/tests/registry/regfetch"
HERE="$SRCDIR/tests/registry"

# The system python (a pyenv shim in front of it costs a second per call).
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

for tool in docker-registry skopeo openssl python3 curl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (.ci/install-deps)"; exit 77; }
done

WORK=$(mktemp -d /tmp/layerfs-regtest.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
export HOME="$WORK/home" XDG_RUNTIME_DIR="$WORK/run"
unset REGISTRY_AUTH_FILE DOCKER_CONFIG XDG_CONFIG_HOME
mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
export LAYERFS_ROOT="$WORK/store"

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $(date +%T) $*"; }

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: until anything answers HTTP there (10 s).
wait_http() {
  local i
  for i in $(seq 100); do
    curl -sk -o /dev/null "$1" && return 0
    sleep 0.1
  done
  fail "nothing answers at $1"
}

# start_registry NAME [AUTH_YAML [TLS_YAML]]: sets REG_<NAME>_PORT and
# REG_<NAME>_STORAGE and REG_<NAME>_LOG. Listens on $REG_ADDR (default
# 127.0.0.1); REG_ACCESSLOG=1 logs every request.
start_registry() {
  local name=$1 extra=${2:-} tls=${3:-} addr=${REG_ADDR:-127.0.0.1}
  local port dir
  port=$(free_port)
  dir="$WORK/registry-$name"
  mkdir -p "$dir/storage"
  {
    echo "version: 0.1"
    if [ -n "${REG_ACCESSLOG:-}" ]; then
      echo "log: {level: warn, accesslog: {disabled: false}}"
    else
      echo "log: {level: warn, accesslog: {disabled: true}}"
    fi
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir/storage}"
    echo "  delete: {enabled: true}"
    echo "http:"
    echo "  addr: $addr:$port"
    [ -n "$tls" ] && printf '%s\n' "$tls"
    [ -n "$extra" ] && printf '%s\n' "$extra"
  } >"$dir/config.yml"
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  PIDS+=($!)
  local scheme=http
  [ -n "$tls" ] && scheme=https
  wait_http "$scheme://$addr:$port/v2/"
  printf -v "REG_${name}_PORT" '%s' "$port"
  printf -v "REG_${name}_STORAGE" '%s' "$dir/storage"
  printf -v "REG_${name}_LOG" '%s' "$dir/log"
}

# start_proxy NAME UPSTREAM_PORT [cut_proxy.py options...]: sets PROXY_<NAME>_PORT;
# the proxy logs to $WORK/proxy-NAME.log.
start_proxy() {
  local name=$1 upstream=$2 port
  shift 2
  port=$(free_port)
  "$PY" "$HERE/cut_proxy.py" "$port" "$upstream" "$WORK/proxy-$name.log" "$@" \
    2>"$WORK/proxy-$name.err" &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/v2/"
  : >"$WORK/proxy-$name.log"
  printf -v "PROXY_${name}_PORT" '%s' "$port"
}

# make_trees ROOT: three small layer trees (base, mid, top) with real content.
make_trees() {
  local t=$1
  mkdir -p "$t/base/etc" "$t/base/usr/bin" "$t/mid/usr/lib" "$t/top/app"
  echo "base layer" >"$t/base/etc/os-release"
  head -c 3000000 /dev/urandom >"$t/base/usr/bin/blob"      # incompressible: a real download
  seq 1 200000 >"$t/base/usr/bin/numbers"
  echo "mid layer" >"$t/mid/usr/lib/mid.txt"
  head -c 1500000 /dev/urandom >"$t/mid/usr/lib/lib.so"
  echo "top layer $RANDOM" >"$t/top/app/version"
  touch "$t/top/.wh.numbers-not-here"
}

# lazy_setup: the registry "lazy" (R=127.0.0.1:port) and the sample trees
# in T=$WORK/t, as the lazy-pull tests start.
lazy_setup() {
  start_registry lazy
  R=127.0.0.1:$REG_lazy_PORT
  make_trees "$WORK/t"
  T=$WORK/t
}

# push_sample_gz: the trees as a three-layer gzip image, pushed as $R/app/gz:1.
push_sample_gz() {
  "$MKIMAGE" --out "$WORK/oci" --format oci --compression gzip --tag gz \
    --layer "$T/base" --layer "$T/mid" --layer "$T/top"
  push "$WORK/oci" gz "$R/app/gz:1"
}

# push LAYOUT TAG DEST [skopeo flags...]: oci:LAYOUT:TAG → docker://DEST (plain HTTP).
push() {
  local layout=$1 tag=$2 dest=$3
  shift 3
  skopeo copy -q --dest-tls-verify=false "$@" "oci:$layout:$tag" "docker://$dest" \
    || fail "skopeo could not push $layout:$tag to $dest"
}

# expect_fail PATTERN CMD...: CMD must fail, with PATTERN (grep -E) on stderr.
expect_fail() {
  local pattern=$1
  shift
  local out
  if out=$("$@" 2>&1 >/dev/null); then fail "'$*' succeeded; expected failure matching /$pattern/"; fi
  echo "$out" | grep -Eq -- "$pattern" || fail "'$*' failed with '$out'; expected /$pattern/"
  echo "  ok, failed as expected: $out"
}

# have_registry_pull: true once `layerctl pull` accepts registry refs.
have_registry_pull() {
  "$LAYERCTL" pull --help 2>/dev/null | grep -q -- "--tls-verify"
}

# make_ca DIR: a CA and a server certificate for 127.0.0.1/localhost signed by
# it (DIR/ca.crt, DIR/server.crt, DIR/server.key); DIR/certs holds only ca.crt
# (a --cert-dir).
make_ca() {
  local d=$1
  mkdir -p "$d/certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=layerfs test CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/ext.cnf" -out "$d/server.crt" 2>/dev/null
  cp "$d/ca.crt" "$d/certs/ca.crt"
}

# tls_yaml DIR: the registry's http.tls section for make_ca's certificate.
tls_yaml() {
  printf '  tls:\n    certificate: %s\n    key: %s\n' "$1/server.crt" "$1/server.key"
}

# count_lines PATTERN FILE
count_lines() { grep -cE -- "$1" "$2" || true; }

# start_token_server PORT KEY CERT LOG [token_server.py options...]: the test
# token service (issuer test-issuer, service test-registry) on 127.0.0.1:PORT;
# sets TOKEN_PID. A registry trusts it with token_yaml PORT CERT.
start_token_server() {
  local port=$1 key=$2 cert=$3 log=$4
  shift 4
  "$PY" "$HERE/token_server.py" "$port" "$key" "$cert" test-issuer test-registry "$log" "$@" \
    2>"$log.err" &
  TOKEN_PID=$!
  PIDS+=($TOKEN_PID)
  wait_http "http://127.0.0.1:$port/token"
  : >"$log"
}
token_yaml() {
  printf 'auth:\n  token:\n    realm: http://127.0.0.1:%s/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: %s\n' "$1" "$2"
}

# layer_cat FILE: the content of a layer entry in a store: a metadata-only
# entry (store format 2) reads from the content object its redirect names.
layer_cat() {
  local r
  r=$(getfattr --only-values -n trusted.overlay.redirect "$1" 2>/dev/null ||
      getfattr --only-values -n user.overlay.redirect "$1" 2>/dev/null) || true
  if [ -n "$r" ]; then cat "${1%%/layers/*}/objects$r"; else cat "$1"; fi
}

# mount_test: for tests that mount: skips (77) without /dev/fuse or root;
# mount points added to MOUNTS are lazily unmounted at exit, before cleanup.
mount_test() {
  [ -e /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
  [ "$(id -u)" = 0 ] || { echo "SKIP: needs root (trusted.* markers, FUSE allow_other)"; exit 77; }
  MOUNTS=()
  trap 'unmount_all; cleanup' EXIT
}
unmount_all() {
  local m
  for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
