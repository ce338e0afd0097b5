#!/usr/bin/env bash
# Data integrity on a layerfs mount with fio --verify=crc32c: sequential and
# random writers on new files, random writers over files copied up from a
# lower layer, concurrent writers, mmap writers. Then the daemon is unmounted
# and the same data is verified again through a fresh layerfs mount and
# through the kernel's overlayfs over the same upper (verify_only).
set -euo pipefail
: "${LAYERFS:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
command -v fio >/dev/null || { echo "SKIP: fio is not installed"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-fio.XXXXXX")
cleanup() {
  for m in "$T/mnt" "$T/kmnt"; do
    if mountpoint -q "$m" 2>/dev/null; then fusermount3 -u "$m" 2>/dev/null || umount -l "$m" || true; fi
  done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$T/lower/data" "$T/upper" "$T/work" "$T/mnt" "$T/kmnt"
SIZE=${FIO_SIZE:-24M}
# lower files the random writers start from (copy-up under fio)
for i in 0 1; do head -c "$SIZE" /dev/urandom > "$T/lower/data/lower.$i.0"; done
cp "$T/lower/data/lower.0.0" "$T/lower-copy"

mount_layerfs() {
  "$LAYERFS" -o "lowerdir=$T/lower,upperdir=$T/upper,workdir=$T/work" "$T/mnt"
  for _ in $(seq 1 100); do mountpoint -q "$T/mnt" && return 0; sleep 0.05; done
  fail "layerfs did not mount"
}

cd "$T"   # fio leaves its verify state files in the current directory
jobfile=$T/jobs.fio
cat > "$jobfile" <<JOBS
[global]
directory=\${FIO_DIR}
size=$SIZE
verify=crc32c
verify_fatal=1
verify_backlog=256
do_verify=1
randrepeat=1
group_reporting=0

[seq]
rw=write
bs=128k
ioengine=psync

[rand]
rw=randwrite
bs=4k
ioengine=psync
fsync=64

[lower]
filename=lower.0.0:lower.1.0
rw=randwrite
bs=16k
ioengine=psync

[concurrent]
rw=randwrite
bs=8k
numjobs=4
ioengine=psync

[mmap]
rw=randwrite
bs=4k
ioengine=mmap
JOBS

mount_layerfs
FIO_DIR=$T/mnt/data fio --output-format=terse --terse-version=3 "$jobfile" > "$T/fio.out" 2> "$T/fio.err" ||
  { cat "$T/fio.err"; tail -5 "$T/fio.out"; fail "fio (write + verify) failed on layerfs"; }
grep -i "verify" "$T/fio.err" && fail "fio reported verify errors"
echo "fio write+verify: $(wc -l < "$T/fio.out") jobs ok"
ls -la "$T/mnt/data" | head -20
fusermount3 -u "$T/mnt"
for _ in $(seq 1 100); do mountpoint -q "$T/mnt" || break; sleep 0.05; done
cmp -s "$T/lower/data/lower.0.0" "$T/lower-copy" || fail "fio's writes reached the lower layer"

# The data is in the upper: verify it again, through layerfs and the kernel.
verify_only() {  # DIR
  FIO_DIR=$1/data fio --output-format=terse --terse-version=3 --verify_only "$jobfile" \
    > "$T/v.out" 2> "$T/v.err" || { cat "$T/v.err"; return 1; }
}
mount_layerfs
verify_only "$T/mnt" || fail "verify after remount failed"
fusermount3 -u "$T/mnt"
for _ in $(seq 1 100); do mountpoint -q "$T/mnt" || break; sleep 0.05; done
mkdir -p "$T/kwork"
mount -t overlay overlay -o "lowerdir=$T/lower,upperdir=$T/upper,workdir=$T/kwork" "$T/kmnt"
verify_only "$T/kmnt" || fail "the kernel's overlayfs over layerfs's upper reads other data"
umount "$T/kmnt"
echo "PASS: fio verify (write, remount, kernel)"
