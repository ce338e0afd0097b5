#!/usr/bin/env bash
# FUSE over io_uring (the default, -o uring=1): with the kernel's fuse.enable_uring on, the
# differential scenarios give the kernel's overlayfs results with every
# request served from the rings (the daemon logs it), processes on every CPU
# get their answers at once, and the daemon exits cleanly at unmount. With the
# parameter off the same option falls back to /dev/fuse; uring=0 turns it
# off. The parameter is restored afterwards.
set -euo pipefail
: "${LAYERFS:?}" "${FSOPS:?}"
[ -e /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }
param=/sys/module/fuse/parameters/enable_uring
[ -w "$param" ] || { echo "kernel without FUSE over io_uring ($param)"; exit 77; }

here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d /var/tmp/layerfs-uring.XXXXXX)
old=$(cat "$param")
pid=
cleanup() {
  umount "$t/m" 2>/dev/null || umount -l "$t/m" 2>/dev/null || true
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  echo "$old" >"$param"
  rm -rf "$t"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
served() { grep -q "FUSE over io_uring: serving requests" "$1"; }

echo Y >"$param"

# 1. The differential scenarios, served from the rings.
for s in errors copyup whiteout rename data metadata readdir hardlink mmap special; do
  log=$t/$s.log
  DIFF_LAYERFS_OPTS="uring=1,log=$log" bash "$here/difftest.sh" "$s" >"$t/$s.out" 2>&1 ||
    fail "scenario $s over io_uring: $(tail -n 20 "$t/$s.out")"
  served "$log" || fail "scenario $s: no request was served from an io_uring: $(cat "$log")"
done
echo "ok: differential scenarios over io_uring"

# mount_one OPTS: a daemon over one lower layer, its log in $t/m.log
mount_one() {
  mkdir -p "$t/l" "$t/u" "$t/w" "$t/m"
  rm -f "$t/m.log"
  "$LAYERFS" -f -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w,log=$t/m.log$1" "$t/m" 2>>"$t/m.err" &
  pid=$!
  for _ in $(seq 100); do
    grep -q " $t/m fuse.layerfs " /proc/mounts && return 0
    sleep 0.05
  done
  fail "mount did not appear: $(cat "$t/m.err")"
}
stop_one() {
  umount "$t/m" || fail "umount"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  ! kill -0 "$pid" 2>/dev/null || fail "the daemon did not exit after the unmount"
  wait "$pid" || fail "the daemon exited with $?"
  pid=
}

# 2. Writers on every CPU at once, then their files read back below.
mkdir -p "$t/l/base"
for i in $(seq 20); do echo "lower $i" >"$t/l/base/f$i"; done
mount_one ,uring=1
ncpu=$(nproc)
for c in $(seq 0 $((ncpu - 1))); do
  taskset -c "$c" bash -c '
    d=$1/w$2; mkdir "$d"
    for i in $(seq 200); do echo "cpu $2 file $i" >"$d/f$i"; done
    for i in $(seq 200); do [ "$(cat "$d/f$i")" = "cpu $2 file $i" ] || exit 1; done
    for i in $(seq 1 2 200); do rm "$d/f$i"; done
    for i in $(seq 20); do echo "changed $2" >>"$1/base/f$i"; done' _ "$t/m" "$c" &
done
wait_all=0
for j in $(jobs -p); do [ "$j" = "$pid" ] && continue; wait "$j" || wait_all=1; done
[ $wait_all = 0 ] || fail "a writer saw wrong data through the mount"
served "$t/m.log" || fail "no request was served from an io_uring"
[ "$(ls "$t/m/w0" | wc -l)" = 100 ] || fail "w0 holds $(ls "$t/m/w0" | wc -l) files, not 100"
stop_one
for c in $(seq 0 $((ncpu - 1))); do
  [ "$(ls "$t/u/w$c" | wc -l)" = 100 ] || fail "upper w$c holds $(ls "$t/u/w$c" | wc -l) files"
  [ "$(cat "$t/u/w$c/f2")" = "cpu $c file 2" ] || fail "upper w$c/f2 is wrong"
done
[ "$(grep -c changed "$t/u/base/f7")" = "$ncpu" ] || fail "base/f7 lost appends: $(cat "$t/u/base/f7")"
[ "$(cat "$t/l/base/f7")" = "lower 7" ] || fail "the lower layer changed"
echo "ok: writers on $ncpu CPUs"

# 3. The kernel's parameter off: the same option falls back to /dev/fuse.
echo N >"$param"
rm -rf "$t/u" "$t/w"
mount_one ,uring=1
[ "$(cat "$t/m/base/f3")" = "lower 3" ] || fail "fallback mount reads wrong data"
echo new >"$t/m/new"
[ "$(cat "$t/m/new")" = new ] || fail "fallback mount writes wrong data"
! served "$t/m.log" || fail "served from io_uring with the kernel's parameter off"
stop_one
echo "ok: fallback to /dev/fuse"

# 4. The default: the rings wherever the kernel's parameter is on, /dev/fuse
# with uring=0.
echo Y >"$param"
rm -rf "$t/u" "$t/w"
mount_one ""
[ "$(cat "$t/m/base/f3")" = "lower 3" ] || fail "default mount reads wrong data"
served "$t/m.log" || fail "the default did not use io_uring with the kernel's parameter on"
stop_one
mount_one ,uring=0
[ "$(cat "$t/m/base/f3")" = "lower 3" ] || fail "uring=0 mount reads wrong data"
! served "$t/m.log" || fail "served from io_uring with uring=0"
stop_one
echo "ok: io_uring by default where the kernel allows it, off with uring=0"
