#!/usr/bin/env bash
# `layerctl run`: bundle + runc run + cleanup in one command, the container's
# output and exit status as its own, --rm leaves nothing; without --rm the
# container stays stopped and `layerctl start` mounts it again with its
# changes; committed without a registry it is named localhost/NAME:TAG (as in
# podman) and found by its short name.
set -euo pipefail
: "${LAYERCTL:?}" "${LAYERFS:?}" "${MKIMAGE:?}" "${SRCDIR:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
command -v runc >/dev/null || { echo "SKIP: runc not installed (.ci/install-deps)"; exit 77; }
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
  || { echo "SKIP: no static /bin/busybox (package busybox-static)"; exit 77; }
source "$SRCDIR/tests/runtime/lib.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-run.XXXXXX")
export LAYERFS_ROOT=$T/store XDG_RUNTIME_DIR=$T/run
mkdir -p "$XDG_RUNTIME_DIR"
cleanup() {
  local m
  for m in $(grep -o " $T/[^ ]*" /proc/mounts | sort -r); do
    "$LAYERCTL" umount "$m" >/dev/null 2>&1 || umount -l "$m" || true
  done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $(date +%T) $*"; }
lc() { "$LAYERCTL" "$@"; }

busybox_trees "$T/t"
"$MKIMAGE" --out "$T/img" --format oci --compression gzip --tag v1 \
  --layer "$T/t/base" --layer "$T/t/top" >/dev/null
lc -q pull "oci:$T/img:v1" >/dev/null
img=oci:$T/img:v1
n_mounts() { grep -c " $T/" /proc/mounts || true; }
before=$(n_mounts)

step "run --rm: the command's output and exit status; nothing left"
out=$(lc run --rm "$img" -- /bin/sh -c 'cat /data/lower.txt; echo "host=$(hostname)"') ||
  fail "run --rm failed"
[ "$(echo "$out" | head -1)" = "lower file" ] || fail "output: $out"
rc=0; lc run --rm "$img" -- /bin/sh -c 'echo bye; exit 7' >"$T/out7" || rc=$?
[ "$rc" -eq 7 ] || fail "exit status $rc, want 7"
[ "$(cat "$T/out7")" = bye ] || fail "output: $(cat "$T/out7")"
[ "$(lc --json ps)" = "[]" ] || fail "run --rm left a container: $(lc --json ps)"
[ "$(n_mounts)" -eq "$before" ] || fail "run --rm left a mount"
[ -z "$(ls -A "$XDG_RUNTIME_DIR/layerfs")" ] || fail "bundle dirs left: $(ls -A "$XDG_RUNTIME_DIR/layerfs")"
rc=0; lc run --rm --runtime /nonexistent/runc "$img" -- /bin/true 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] || fail "missing runtime: exit $rc"
grep -q "runtime '/nonexistent/runc': No such file or directory" "$T/err" || fail "missing runtime: $(cat "$T/err")"
[ "$(lc --json ps)" = "[]" ] || fail "a failed run left a container"
rc=0; lc run --rm nope:1 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "'nope:1': no such image" "$T/err" || fail "unknown image: $rc $(cat "$T/err")"

step "run without --rm: the container stays, stopped, with its changes"
lc run --name keep "$img" -- /bin/sh -c 'echo "made in run" >/data/made.txt; rm /data/doomed.txt' ||
  fail "run --name keep"
lc --json ps | grep -q '"name": "keep"' || fail "keep is not listed"
lc ps | grep keep | grep -q stopped || fail "keep is not stopped: $(lc ps)"
[ "$(n_mounts)" -eq "$before" ] || fail "run left a mount"
rc=0; lc start keep 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "is gone; give a DIR" "$T/err" || fail "start without DIR: $(cat "$T/err")"

step "start: mounts it again with its changes; mount by the same name points to start"
mkdir -p "$T/m"
[ "$(lc start keep "$T/m")" = keep ] || fail "start keep"
[ "$(cat "$T/m/data/made.txt")" = "made in run" ] || fail "the change made in run is gone"
[ ! -e "$T/m/data/doomed.txt" ] || fail "the delete made in run is gone"
[ "$(cat "$T/m/data/lower.txt")" = "lower file" ] || fail "lower file"
rc=0; lc start keep "$T/m" 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "already mounted" "$T/err" || fail "second start: $(cat "$T/err")"
lc umount "$T/m" >/dev/null
mkdir -p "$T/m2"
rc=0; lc mount --name keep "$img" "$T/m2" 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "'layerctl start keep' mounts it again" "$T/err" || fail "mount --name keep: $(cat "$T/err")"

step "commit without a registry: localhost/NAME:TAG, found by its short name"
lc -q commit keep kept:1 >/dev/null
lc --json images | grep -q '"name": "localhost/kept:1"' || fail "not localhost/kept:1: $(lc images)"
lc images | grep -q "^localhost/kept:1 " || fail "images does not list localhost/kept:1: $(lc images)"
out=$(lc run --rm kept:1 -- /bin/cat /data/made.txt) || fail "run kept:1"
[ "$out" = "made in run" ] || fail "kept:1: $out"
lc rm keep >/dev/null
[ "$(n_mounts)" -eq "$before" ] || fail "mounts left"
echo PASS
