#!/usr/bin/env bash
# Issue 17 §3: a full upper never makes a file unreadable. The upper and work
# dirs live on a small loop-mounted ext4 with less free space than a 32 MiB
# lower file. A 1-byte write into that file (a lazy copy-up) must either fail
# (ENOSPC, the kernel's overlayfs answer) or leave a file that reads back
# whole; it must never make later opens fail. With room to spare, the same
# write succeeds and the file reads back as the lower with the byte changed.
set -euo pipefail
: "${LAYERFS:?}"
source "$(dirname "$0")/lib.sh" fullupper
command -v mkfs.ext4 >/dev/null || { echo "no mkfs.ext4"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
pid=
cleanup_all() {
  umount "$t/mnt" 2>/dev/null || umount -l "$t/mnt" 2>/dev/null || true
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  umount "$t/up" 2>/dev/null || umount -l "$t/up" 2>/dev/null || true
  cleanup
}
trap cleanup_all EXIT

mkdir -p "$t/lower/data" "$t/mnt" "$t/up"
head -c $((32 << 20)) /dev/urandom >"$t/lower/data/big"
truncate -s 96M "$t/ext4.img"
mkfs.ext4 -q -F "$t/ext4.img"
mount -o loop "$t/ext4.img" "$t/up" || { echo "cannot loop-mount ext4"; exit 77; }

# run_case FREE_MIB OPTS: mounts with FREE_MIB MiB left free on the upper,
# writes one byte at offset 4097, then reads the whole file with fresh opens.
run_case() {
  local free=$1 opts=$2 avail
  umount "$t/mnt" 2>/dev/null || true
  rm -rf "$t/up/upper" "$t/up/work" "$t/up/filler"
  mkdir -p "$t/up/upper" "$t/up/work"
  avail=$(df --output=avail -B1 "$t/up" | tail -1)
  fallocate -l $((avail - (free << 20))) "$t/up/filler"
  "$LAYERFS" -f -o "lowerdir=$t/lower,upperdir=$t/up/upper,workdir=$t/up/work$opts" "$t/mnt" \
    2>"$t/daemon.log" &
  pid=$!
  for _ in $(seq 100); do grep -q " $t/mnt fuse.layerfs " /proc/mounts && break; sleep 0.05; done
  grep -q " $t/mnt fuse.layerfs " /proc/mounts || fail "layerfs did not mount: $(cat "$t/daemon.log")"
  "$PY" - "$t/mnt/data/big" "$t/lower/data/big" <<'PY'
import errno, os, sys
path, lower = sys.argv[1], sys.argv[2]
want = bytearray(open(lower, "rb").read())
try:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"X", 4097)
        want[4097] = ord("X")
        print("  write: ok")
    finally:
        os.close(fd)
except OSError as e:
    print("  write: %s" % errno.errorcode.get(e.errno, e.errno))
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        sys.exit("FAIL: the write failed with %s" % e)
for i in range(3):
    try:
        got = open(path, "rb").read()
    except OSError as e:
        sys.exit("FAIL: open/read #%d after the write: %s" % (i, e))
    if got != bytes(want):
        sys.exit("FAIL: the file reads back wrong (read #%d)" % i)
print("  reads back whole, 3 times")
PY
  umount "$t/mnt"
  wait "$pid" 2>/dev/null || true
  pid=
  # At rest the upper is a plain file again (or absent), never half filled.
  if [ -e "$t/up/upper/data/big" ]; then
    cmp -s <("$PY" -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[4097]=ord("X"); sys.stdout.buffer.write(d)' "$t/lower/data/big") \
      "$t/up/upper/data/big" || fail "the upper copy at rest is not the lower with the byte changed"
  fi
}

for opts in "" ",passthrough=0"; do
  echo "--- nearly full upper (8 MiB free)${opts:+, $opts}"
  run_case 8 "$opts"
  echo "--- room to spare (60 MiB free)${opts:+, $opts}"
  run_case 60 "$opts"
  [ -e "$t/up/upper/data/big" ] || fail "the write with room to spare left no upper copy"
done
echo PASS
