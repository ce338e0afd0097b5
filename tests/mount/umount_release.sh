#!/usr/bin/env bash
# umount lets go of the layers (issue 18): once `umount MNT` has returned,
# the filesystem under a lower layer (and the upper's) unmounts at once, as
# test harnesses and container storage drivers do: the daemon's fds must not
# keep them busy (it holds them through private clones of their mounts, and
# closes them first when the session ends). Ten mount/read/umount/
# umount-the-lower cycles in a row, each on fresh tmpfs mounts, with and
# without FUSE passthrough and with a file left open by a reader until the
# umount, must all succeed.
set -euo pipefail
source "$(dirname "$0")/lib.sh" umount

release() {
  local m
  for m in "$t/mnt" "$t/lower" "$t/upper"; do
    mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
  done
  cleanup
}
trap release EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$t/mnt" "$t/lower" "$t/upper"
for pt in 1 0; do
  for i in $(seq 1 10); do
    mount -t tmpfs tmpfs "$t/lower"
    mount -t tmpfs tmpfs "$t/upper"
    mkdir -p "$t/lower/d/e" "$t/upper/u" "$t/upper/w"
    for j in $(seq 1 20); do echo "file $j" >"$t/lower/d/e/f$j"; done
    head -c 1M /dev/urandom >"$t/lower/big"
    "$LAYERFS" -o "lowerdir=$t/lower,upperdir=$t/upper/u,workdir=$t/upper/w,passthrough=$pt" "$t/mnt"
    cat "$t/mnt"/d/e/* >/dev/null
    ls -R "$t/mnt" >/dev/null
    echo changed >>"$t/mnt/d/e/f1"
    exec 3<"$t/mnt/big"  # open in the daemon until the umount
    exec 3<&-
    # The three umounts back to back from one process, as a storage
    # driver's cleanup does them: no time for the daemon to exit between.
    python3 - "$t/mnt" "$t/lower" "$t/upper" <<'PY' || fail "passthrough=$pt cycle $i"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for what, path in zip(("the mount", "the lower's filesystem", "the upper's filesystem"), sys.argv[1:]):
    if libc.umount2(path.encode(), 0) != 0:
        sys.exit(f"umount of {what} right after the one before: {os.strerror(ctypes.get_errno())}")
PY
  done
  echo "ok: passthrough=$pt: 10 cycles"
done
