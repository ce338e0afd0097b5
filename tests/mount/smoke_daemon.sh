#!/usr/bin/env bash
# Smoke test of the layerfs daemon itself: option errors before mounting,
# no lazy-pull code loaded without lazy layers,
# read-only mounts, background start with a log file, request counts on
# SIGUSR1 and at unmount, SIGTERM unmounts and exits cleanly, `umount` ends
# the daemon.
set -euo pipefail
source "$(dirname "$0")/lib.sh" daemon
mkdir -p "$t/l1" "$t/l2" "$t/u" "$t/w" "$t/mnt"
echo one >"$t/l2/f"
echo two >"$t/l1/g"

mounted() { grep -q " $t/mnt fuse.layerfs " /proc/mounts; }

# Every bad option or directory is refused by name, exit 2 for usage, 1 for
# unusable directories, and nothing is mounted.
expect_fail() {
  local code=$1 word=$2
  shift 2
  local out rc=0
  out=$("$LAYERFS" "$@" 2>&1) || rc=$?
  if [ "$rc" != "$code" ] || ! grep -q -- "$word" <<<"$out"; then
    echo "expected exit $code mentioning '$word' from: $* ; got $rc: $out"
    exit 1
  fi
  if mounted; then echo "mounted after failure: $*"; exit 1; fi
}
expect_fail 2 "bogus" -o "lowerdir=$t/l1,bogus" "$t/mnt"
expect_fail 2 "fsync" -o "lowerdir=$t/l1,fsync=sometimes" "$t/mnt"
expect_fail 2 "lowerdir" -o "upperdir=$t/u,workdir=$t/w" "$t/mnt"
expect_fail 2 "workdir" -o "lowerdir=$t/l1,upperdir=$t/u" "$t/mnt"
expect_fail 2 "mount point" -o "lowerdir=$t/l1"
expect_fail 2 "--frob" --frob -o "lowerdir=$t/l1" "$t/mnt"
expect_fail 1 "$t/nope" -o "lowerdir=$t/l1:$t/nope" "$t/mnt"
expect_fail 1 "$t/nope" -o "lowerdir=$t/l1,upperdir=$t/nope,workdir=$t/w" "$t/mnt"
expect_fail 1 "$t/mnt/x" -o "lowerdir=$t/l1" "$t/mnt/x"
"$LAYERFS" --help | grep -q lowerdir

# Read-only, no upper: visible, unchangeable.
"$LAYERFS" -o "lowerdir=$t/l1:$t/l2,ro" "$t/mnt"
mounted
[ "$(cat "$t/mnt/f")" = one ]
if touch "$t/mnt/new" 2>/dev/null; then echo "read-only mount accepted a write"; exit 1; fi
umount "$t/mnt"
for _ in $(seq 50); do pgrep -f "layerfs -o lowerdir=$t/l1:$t/l2,ro" >/dev/null || break; sleep 0.1; done
if pgrep -f "layerfs -o lowerdir=$t/l1:$t/l2,ro" >/dev/null; then echo "daemon outlived umount"; exit 1; fi

# Background start with a log file; SIGTERM unmounts and exits 0.
"$LAYERFS" -o "lowerdir=$t/l1:$t/l2,upperdir=$t/u,workdir=$t/w,log=$t/log,fsync=0" "$t/mnt"
mounted
echo three >"$t/mnt/h"
# The daemon's pid: once the parent that daemonized it has exited, one is left.
for _ in $(seq 50); do
  pids=$(pgrep -f "layerfs -o lowerdir=$t/l1:$t/l2,upperdir=$t/u" || true)
  [ "$(echo "$pids" | wc -w)" = 1 ] && break
  sleep 0.1
done
pid=$pids
[ "$(echo "$pid" | wc -w)" = 1 ] || { echo "not one daemon: '$pid'"; exit 1; }
# A mount without lazy layers maps none of the lazy-pull code (the module and
# the libraries it links: loading them cost every start ~25 ms).
if grep -E 'liblayerfs-lazy|libcurl|libcrypto|libzstd|libarchive' "/proc/$pid/maps"; then
  echo "the daemon of a mount without lazy layers loaded the lazy-pull code"; exit 1
fi
# SIGUSR1 logs the request counts by opcode while mounted (the daemon lives
# on), and the unmount logs them again.
stat "$t/mnt/nothing-here" 2>/dev/null || true
kill -USR1 "$pid"
for _ in $(seq 50); do grep -q "requests: " "$t/log" && break; sleep 0.1; done
grep "requests: " "$t/log" | grep -q "LOOKUP [1-9]" ||
  { echo "no request counts with LOOKUP in the log after SIGUSR1:"; cat "$t/log"; exit 1; }
kill -0 "$pid"
mounted
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then echo "daemon ignored SIGTERM"; exit 1; fi
if mounted; then echo "still mounted after SIGTERM"; exit 1; fi
[ "$(cat "$t/u/h")" = three ]
grep -q "mounted on" "$t/log"
[ "$(grep -c "requests: .*CREATE 1" "$t/log")" = 2 ] ||
  { echo "expected the counts (CREATE 1) on SIGUSR1 and at unmount:"; cat "$t/log"; exit 1; }

# Foreground mode: the daemon stays attached; umount ends it with status 0.
"$LAYERFS" -f -o "lowerdir=$t/l1:$t/l2,upperdir=$t/u,workdir=$t/w" "$t/mnt" 2>"$t/fg.log" &
fg=$!
for _ in $(seq 50); do mounted && break; sleep 0.1; done
mounted
[ "$(cat "$t/mnt/h")" = three ]
umount "$t/mnt"
wait "$fg"
# xattr_permissions=2 (fuse-overlayfs's): chown and chmod on the mount go to
# user.fuseoverlayfs.override_stat on the upper copy, whose real owner stays
# root; the kernel's permission checks follow the owner and mode shown; the
# xattr is invisible inside; a remount shows the same.
getx() { python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode())' "$@"; }
mkdir -p "$t/xu" "$t/xw"
chmod 755 "$t"  # mktemp's 0700 would stop the other users below at $t
xmount() { "$LAYERFS" -o "lowerdir=$t/l1:$t/l2,upperdir=$t/xu,workdir=$t/xw,xattr_permissions=2" "$t/mnt"; }
xmount
mounted
chown 1234:5678 "$t/mnt/f"
chmod 0600 "$t/mnt/f"
[ "$(stat -c %u:%g:%a "$t/mnt/f")" = 1234:5678:600 ] || { echo "override not shown: $(stat -c %u:%g:%a "$t/mnt/f")"; exit 1; }
[ "$(stat -c %u:%g "$t/xu/f")" = 0:0 ] || { echo "the upper file was really chowned"; exit 1; }
[ "$(getx "$t/xu/f" user.fuseoverlayfs.override_stat)" = 1234:5678:600 ] || { echo "xattr on the upper: wrong"; exit 1; }
if getx "$t/mnt/f" user.fuseoverlayfs.override_stat >/dev/null 2>&1; then echo "override xattr visible inside"; exit 1; fi
if setpriv --reuid=4321 --regid=4321 --clear-groups cat "$t/mnt/f" >/dev/null 2>&1; then
  echo "a stranger read a 0600 file"; exit 1
fi
[ "$(setpriv --reuid=1234 --regid=5678 --clear-groups cat "$t/mnt/f")" = one ] || { echo "the owner cannot read"; exit 1; }
umount "$t/mnt"
xmount
[ "$(stat -c %u:%g:%a "$t/mnt/f")" = 1234:5678:600 ] || { echo "override lost on remount"; exit 1; }
umount "$t/mnt"

echo "smoke_daemon: ok"
