#!/usr/bin/env bash
# When the daemon cannot mount, `layerctl mount` passes on the daemon's own
# reason (libfuse's "fuse: device not found, try 'modprobe fuse' first" when
# /dev/fuse is missing) in its one error line, and keeps nothing half-made:
# no container record, upper or log, no mount. Run in a private mount
# namespace whose /dev has no fuse device.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
: "${LAYERFS:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (a mount namespace with its own /dev)"; exit 77; }
command -v unshare >/dev/null || { echo "SKIP: no unshare"; exit 77; }
export LAYERFS
make_trees
"$MKIMAGE" --out "$T/img" --format oci --tag t --layer "$T/base" >/dev/null
lc -q pull "oci:$T/img:t" >/dev/null
mkdir -p "$T/m"

rc=0
unshare --mount --propagation private bash -c '
  set -e
  mount -t tmpfs -o size=1m devtmp /dev
  mknod -m 666 /dev/null c 1 3
  exec "$LAYERCTL" --root "$1" mount "$2" "$3"' _ "$STORE" "oci:$T/img:t" "$T/m" \
  >"$T/out" 2>"$T/err" || rc=$?
err=$(cat "$T/err")
echo "error: $err"
[ "$rc" -eq 1 ] || fail "exit $rc (want 1): $err"
[ "$(grep -c . "$T/err")" -eq 1 ] || fail "want one error line: $err"
expect_contains "$err" "layerctl: mount: '$T/m': layerfs exited before mounting: "
expect_contains "$err" "fuse: device not found, try 'modprobe fuse' first"
[ "$(lc --json ps)" = "[]" ] || fail "a container was left: $(lc --json ps)"
[ -z "$(ls -A "$STORE/containers" 2>/dev/null)" ] || fail "containers/ not empty: $(ls -A "$STORE/containers")"
! grep -q " $T/m " /proc/mounts || fail "something is mounted at $T/m"

# The same through `layerctl start` of a stopped container: its record stays.
lc -q mount --name keep "oci:$T/img:t" "$T/m" >/dev/null
lc -q umount "$T/m"
rc=0
unshare --mount --propagation private bash -c '
  set -e
  mount -t tmpfs -o size=1m devtmp /dev
  mknod -m 666 /dev/null c 1 3
  exec "$LAYERCTL" --root "$1" start keep' _ "$STORE" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] || fail "start: exit $rc"
expect_contains "$(cat "$T/err")" "fuse: device not found"
expect_not_contains "$(cat "$T/err")" "mounted on"  # not the earlier mount's log lines
lc --json ps | grep -q '"name": "keep"' || fail "start's failure removed the container"
lc rm keep >/dev/null
echo PASS
