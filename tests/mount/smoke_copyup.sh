#!/usr/bin/env bash
# Smoke test of lazy copy-up through a real mount: a write into a big lower
# file is visible at once with the rest of the file intact, a chmod copies no
# data, unmount leaves plain overlay files, and after kill -9 the next mount
# completes what was left (every file is its lower version or its whole copy).
set -euo pipefail
source "$(dirname "$0")/lib.sh" copyup
mkdir -p "$t/l1" "$t/u" "$t/w" "$t/mnt"
python3 - "$t/l1" <<'PY'
import os, sys
d = sys.argv[1]
for name in ("big", "big2", "big3"):
    with open(os.path.join(d, name), "wb") as f:
        for i in range(24):
            f.write(bytes([65 + i]) * (1 << 20))
PY
sums() { (cd "$t/l1" && sha256sum big big2 big3); }
lower_before=$(sums)
mount_it() { "$LAYERFS" -o "lowerdir=$t/l1,upperdir=$t/u,workdir=$t/w" "$t/mnt"; }
mount_it
pid=$(pgrep -f "layerfs -o lowerdir=$t/l1" | head -1)

python3 - "$t/mnt" <<'PY'
import os, sys
m = sys.argv[1]
fd = os.open(os.path.join(m, "big"), os.O_WRONLY)
os.pwrite(fd, b"HELLO", (5 << 20) + 3)
os.close(fd)
want = bytearray()
for i in range(24):
    want += bytes([65 + i]) * (1 << 20)
want[(5 << 20) + 3:(5 << 20) + 8] = b"HELLO"
with open(os.path.join(m, "big"), "rb") as f:
    got = f.read()
assert got == want, "merged read differs"
os.chmod(os.path.join(m, "big2"), 0o600)
st = os.stat(os.path.join(m, "big2"))
assert st.st_size == 24 << 20 and st.st_nlink == 1, st
with open(os.path.join(m, "big2"), "rb") as f:
    f.seek(17 << 20)
    assert f.read(3) == bytes([65 + 17]) * 3
PY

# kill -9 in the middle: the next mount completes both files.
kill -9 "$pid"
umount "$t/mnt" 2>/dev/null || umount -l "$t/mnt"
mount_it
umount "$t/mnt"
for _ in $(seq 100); do pgrep -f "layerfs -o lowerdir=$t/l1" >/dev/null || break; sleep 0.1; done

python3 - "$t/u" <<'PY'
import os, sys
u = sys.argv[1]
want = bytearray()
for i in range(24):
    want += bytes([65 + i]) * (1 << 20)
plain = bytes(want)
want[(5 << 20) + 3:(5 << 20) + 8] = b"HELLO"
assert open(os.path.join(u, "big"), "rb").read() == bytes(want), "big incomplete"
# chmod copies no data: big2 is a metadata-only copy (the kernel's metacopy).
b2 = os.stat(os.path.join(u, "big2"))
assert b2.st_size == 24 << 20 and b2.st_blocks <= 8, ("big2 holds data", b2)
assert "trusted.overlay.metacopy" in os.listxattr(os.path.join(u, "big2")), "big2 unmarked"
assert oct(b2.st_mode & 0o777) == "0o600"
assert not os.path.exists(os.path.join(u, "big3"))
for n in ("big", "big2"):
    p = os.path.join(u, n)
    assert "trusted.overlay.layerfs.partial" not in os.listxattr(p), n
    assert os.stat(p).st_nlink == 1, n
PY
[ -z "$(ls -A "$t/w/layerfs-partial")" ]
[ "$(sums)" = "$lower_before" ]
echo "smoke_copyup: ok"
