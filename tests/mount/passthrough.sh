#!/usr/bin/env bash
# FUSE passthrough (the default as root): reads and writes of open files go
# straight to the real files (the daemon sees no READ or WRITE requests),
# several mounts over one lower file share its page cache, shared mmap works,
# and the one conflict (an open of the upper copy while the lower file is
# open) fails with ETXTBSY until the lower opens close. passthrough=0 is the
# control: there the same reads and writes do reach the daemon.
set -euo pipefail
: "${LAYERFS:?}"
[ -e /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

t=$(mktemp -d /var/tmp/layerfs-pt.XXXXXX)
pids=()
cleanup() {
  local m
  for m in "$t"/m*; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$t"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$t/l1/etc" "$t/l1/data"
echo "root:x:0:0" >"$t/l1/etc/passwd"
for i in $(seq 0 29); do echo "lower $i" >"$t/l1/etc/f$i"; done
size_mib=96
head -c $((size_mib << 20)) /dev/urandom >"$t/l1/data/big"
want=$(sha256sum <"$t/l1/data/big" | cut -d' ' -f1)

# mount NAME [OPTS]: a foreground debug daemon whose request log is $t/NAME.log
mount_one() {
  local n=$1 o=${2:-}
  mkdir -p "$t/$n" "$t/u$n" "$t/w$n"
  "$LAYERFS" -d -o "lowerdir=$t/l1,upperdir=$t/u$n,workdir=$t/w$n$o" "$t/$n" >"$t/$n.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q " $t/$n fuse.layerfs " /proc/mounts && return 0
    sleep 0.05
  done
  fail "mount $n did not appear: $(cat "$t/$n.log")"
}
requests() { grep -c "opcode: $2 " "$t/$1.log" || true; }
cached_kib() { awk '/^Cached:/ {print $2}' /proc/meminfo; }

mount_one m1
mount_one m2
mount_one m3 ,passthrough=0

# 0. the route: libfuse >= 3.17 (soname libfuse3.so.4) has an API for it,
# older ones reach it through the custom io
if ldd "$LAYERFS" | grep -q 'libfuse3\.so\.4 '; then route="libfuse's API"; else route="custom io"; fi
grep -q "passthrough: on (kernel offers it; $route)" "$t/m1.log" ||
  fail "m1 did not turn passthrough on through $route: $(grep 'passthrough:' "$t/m1.log")"
echo "passthrough through $route ($("$LAYERFS" --version))"

# 1. reads: no READ requests with passthrough, and the data is right
[ "$(sha256sum <"$t/m1/data/big" | cut -d' ' -f1)" = "$want" ] || fail "m1 read wrong data"
[ "$(requests m1 READ)" = 0 ] || fail "m1 (passthrough) got $(requests m1 READ) READ requests"
[ "$(sha256sum <"$t/m3/data/big" | cut -d' ' -f1)" = "$want" ] || fail "m3 read wrong data"
[ "$(requests m3 READ)" -gt 0 ] || fail "m3 (passthrough=0) got no READ requests: the check cannot tell"

# 2. page cache: two passthrough mounts reading one lower file add one copy;
# the classic path adds its own copy per mount on top of the lower file's.
sync
echo 3 >/proc/sys/vm/drop_caches
c0=$(cached_kib)
cat "$t/m1/data/big" "$t/m2/data/big" >/dev/null
c1=$(cached_kib)
pt_growth=$(((c1 - c0) / 1024))
echo 3 >/proc/sys/vm/drop_caches
c0=$(cached_kib)
cat "$t/m3/data/big" >/dev/null
c1=$(cached_kib)
classic_growth=$(((c1 - c0) / 1024))
echo "page cache: two passthrough mounts +${pt_growth} MiB, one classic mount +${classic_growth} MiB (file ${size_mib} MiB)"
[ "$pt_growth" -lt $((size_mib * 3 / 2)) ] || fail "passthrough mounts added ${pt_growth} MiB for a ${size_mib} MiB file"
[ "$classic_growth" -gt $((size_mib * 3 / 2)) ] ||
  echo "note: the classic mount added only ${classic_growth} MiB (control inconclusive)"

# 3. writes to a new file and to a copied-up file: no WRITE requests
dd if=/dev/urandom of="$t/new" bs=1M count=8 status=none
dd if="$t/new" of="$t/m1/newfile" bs=1M status=none conv=fsync
cmp "$t/new" "$t/m1/newfile" || fail "new file reads back wrong"
cmp "$t/new" "$t/um1/newfile" || fail "new file's upper copy differs"
printf 'ROOT' | dd of="$t/m1/etc/passwd" conv=notrunc status=none
[ "$(cat "$t/m1/etc/passwd")" = "ROOT:x:0:0" ] || fail "copy-up write: $(cat "$t/m1/etc/passwd")"
[ "$(cat "$t/um1/etc/passwd")" = "ROOT:x:0:0" ] || fail "upper copy: $(cat "$t/um1/etc/passwd")"
[ "$(requests m1 WRITE)" = 0 ] || fail "m1 (passthrough) got $(requests m1 WRITE) WRITE requests"
printf 'x' | dd of="$t/m3/etc/passwd" conv=notrunc status=none
[ "$(requests m3 WRITE)" -gt 0 ] || fail "m3 (passthrough=0) got no WRITE requests: the check cannot tell"

# 4. shared writable mmap of an upper file, seen by read(2) and in the upper
python3 - "$t/m1/newfile" <<'EOF'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:6] = b"MAPPED"
m.flush()
m.close()
assert os.pread(fd, 6, 0) == b"MAPPED", os.pread(fd, 6, 0)
os.close(fd)
EOF
[ "$(head -c 6 "$t/um1/newfile")" = MAPPED ] || fail "mmap write did not reach the upper file"

# 5. the conflict: a lower file open read-only, then an open that copies it up
python3 - "$t/m2/data/big" <<'EOF'
import errno, os, sys, time
path = sys.argv[1]
ro = os.open(path, os.O_RDONLY)
os.read(ro, 4096)
t0 = time.time()
try:
    os.open(path, os.O_WRONLY)
    sys.exit("FAIL: copy-up open succeeded while the lower file is open in passthrough")
except OSError as e:
    assert e.errno == errno.ETXTBSY, e
waited = time.time() - t0
assert 0.5 < waited < 10, waited
os.close(ro)
# once the reader is gone (its RELEASE may lag the close), the write works
fd = os.open(path, os.O_WRONLY)
os.pwrite(fd, b"HELLO", 0)
os.close(fd)
with open(path, "rb") as f:
    assert f.read(5) == b"HELLO"
# a read, a close and a copy-up right after, of many lower files, never
# trips on a RELEASE that arrives after the next OPEN
etc = os.path.join(os.path.dirname(os.path.dirname(path)), "etc")
for i in range(30):
    f = os.path.join(etc, "f%d" % i)
    r = os.open(f, os.O_RDONLY)
    assert os.read(r, 10) == b"lower %d\n" % i
    os.close(r)
    w = os.open(f, os.O_WRONLY | os.O_APPEND)
    os.write(w, b"upper\n")
    os.close(w)
    with open(f, "rb") as g:
        assert g.read() == b"lower %d\nupper\n" % i
print("conflict: ETXTBSY after %.2f s, then writes work" % waited)
EOF
echo "ok"
