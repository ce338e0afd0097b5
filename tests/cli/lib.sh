# Shared setup for the cli tests: a temp dir removed on exit, a fresh store,
# sample layer trees, and small assertions. Source it after `set -euo pipefail`.
: "${LAYERCTL:?run under meson test}" "${MKIMAGE:?run under meson test}"
T=$(mktemp -d /tmp/layerfs-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
STORE=$T/store
lc() { "$LAYERCTL" --root "$STORE" "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_contains TEXT NEEDLE
expect_contains() { [[ "$1" == *"$2"* ]] || fail "expected '$2' in: $1"; }
expect_not_contains() { [[ "$1" != *"$2"* ]] || fail "did not expect '$2' in: $1"; }
# expect_fail_line NEEDLE CMD...: CMD must exit 1 with exactly one stderr line
# of the form "layerctl: CMD: ..." containing NEEDLE.
expect_fail_line() {
  local needle=$1; shift
  local rc=0 err
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 1 ] || fail "exit $rc (want 1) from: $* : $err"
  [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] || fail "want one error line, got: $err"
  [[ "$err" == layerctl:* ]] || fail "error line does not start with 'layerctl:': $err"
  [[ "$err" == *"$needle"* ]] || fail "error line lacks '$needle': $err"
  LAST_ERR=$err
}
layer_count() { find "$STORE/layers/sha256" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l; }
# py EXPR: evaluates a python3 expression over JSON on stdin bound to `j`.
py() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

# Sample trees: base (shared), app1 and app2 (on top of base), del (whiteout).
make_trees() {
  mkdir -p "$T/base/etc" "$T/base/bin" "$T/app1/srv" "$T/app2/srv" "$T/del/etc"
  echo "base" >"$T/base/etc/hello"
  echo "gone soon" >"$T/base/etc/victim"
  head -c 300000 /dev/urandom >"$T/base/bin/blob"
  ln -s ../etc/hello "$T/base/bin/hello-link"
  echo "app one" >"$T/app1/srv/app"
  echo "app two" >"$T/app2/srv/app"
  : >"$T/del/etc/.wh.victim"
}
# layer_dir IMAGE N: the store directory of IMAGE's N-th layer (0 = bottom).
# (grep, not python: python3 takes seconds to start on a loaded machine)
layer_dir() {
  local id
  id=$(lc --json inspect "$1" | grep -o '"diff_id": "sha256:[0-9a-f]*"' | sed -n "$(($2 + 1))p" |
    sed 's/.*sha256://; s/"//')
  [ -n "$id" ] || fail "no layer $2 in $1"
  echo "$STORE/layers/sha256/$id/diff"
}

# layer_cat FILE: the content of a layer entry in a store: a metadata-only
# entry (store format 2) reads from the content object its redirect names.
layer_cat() {
  local r
  r=$(getfattr --only-values -n trusted.overlay.redirect "$1" 2>/dev/null ||
      getfattr --only-values -n user.overlay.redirect "$1" 2>/dev/null) || true
  if [ -n "$r" ]; then cat "${1%%/layers/*}/objects$r"; else cat "$1"; fi
}
