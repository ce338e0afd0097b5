#!/usr/bin/env bash
# Issue 22: a metadata change of a lower file copies no data (the kernel's
# metacopy=on). Over a format-2 store, through `layerctl mount`:
# - chmod -R, chown, touch and setfattr over the image's tree leave the
#   upper at metadata size after 10 s idle (a lazy copy-up's background fill
#   used to copy every file within seconds);
# - the kernel's overlayfs with metacopy=on mounts that upper over the same
#   layers and shows the same tree, metadata and bytes;
# - a write after chmod copies the data (small and big files) and reads are
#   right, before and after a remount;
# - kill -9 of the daemon, then `layerctl start`, keeps it all;
# - `layerctl commit` writes the metadata-only files whole.
set -euo pipefail
: "${LAYERCTL:?}" "${LAYERFS:?}" "${BUILDDIR:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
mkimage=${MKIMAGE:-$BUILDDIR/tests/fixtures/mkimage}

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-mcopy.XXXXXX")
export LAYERFS_ROOT=$T/store
cleanup() {
  for m in "$T"/mnt/*; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" || true; fi
  done
  rm -rf "$T"
}
trap cleanup EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
fail() { echo "FAIL: $*"; exit 1; }
L() { "$LAYERCTL" "$@"; }

# --- an image: small and big files (one past the lazy copy-up's 1 MiB), two layers
mkdir -p "$T/l1/usr/lib/sub" "$T/l2/usr/share" "$T/mnt"
for i in $(seq 1 30); do head -c $((i * 7000)) /dev/urandom > "$T/l1/usr/lib/f$i"; done
for i in $(seq 1 10); do printf 'small %s\n' "$i" > "$T/l1/usr/lib/sub/s$i"; done
head -c $((3 << 20)) /dev/urandom > "$T/l1/usr/lib/big1"
head -c $((5 << 20)) /dev/urandom > "$T/l2/usr/share/big2"
head -c 50000 /dev/urandom > "$T/l2/usr/share/mid"
"$mkimage" --out "$T/img" --format oci --tag v1 --layer "$T/l1" --layer "$T/l2" >/dev/null
L -q pull --drop-blobs "oci:$T/img:v1" >/dev/null
data_bytes=$(du -s --block-size=1 --apparent-size "$T/l1" "$T/l2" | awk '{s += $1} END {print s}')

mkdir "$T/mnt/a" "$T/mnt/k"
L mount "oci:$T/img:v1" "$T/mnt/a" --name a >/dev/null
cid=$(ls "$LAYERFS_ROOT/containers")
C=$LAYERFS_ROOT/containers/$cid
daemon_pid() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$C/container.json"; }

# --- metadata changes only
chmod -R go-r "$T/mnt/a/usr"
chown -R 1234:2345 "$T/mnt/a/usr/lib/sub"
touch -h -d 2021-03-04 "$T/mnt/a/usr/share/big2"
setfattr -n user.note -v hi "$T/mnt/a/usr/lib/f7"
sleep 10
upper_bytes=$(du -s --block-size=1 "$C/upper" | cut -f1)
echo "upper after chmod -R and 10 s idle: $upper_bytes bytes on disk, lower data $data_bytes bytes"
[ $((upper_bytes * 100)) -lt "$data_bytes" ] ||
  fail "the upper holds $upper_bytes bytes, 1% or more of the $data_bytes bytes of data"
[ "$(getfattr --only-values -n trusted.overlay.metacopy "$C/upper/usr/lib/big1" 2>/dev/null; echo ok)" = ok ] ||
  fail "big1 in the upper has no metacopy marker"
cmp "$T/l1/usr/lib/big1" "$T/mnt/a/usr/lib/big1" || fail "big1's data after chmod"
cmp "$T/l2/usr/share/big2" "$T/mnt/a/usr/share/big2" || fail "big2's data after touch"
[ "$(stat -c '%a %u %g' "$T/mnt/a/usr/lib/sub/s3")" = "600 1234 2345" ] ||
  fail "s3's metadata: $(stat -c '%a %u %g' "$T/mnt/a/usr/lib/sub/s3")"

tree() {
  (cd "$1" && find . \( -type d -printf '%p d %m %u %g\n' \) -o -printf '%p %y %m %u %g %s %n %T@\n' |
    sort &&
    find . -type f -print0 | sort -z | xargs -0 sha256sum &&
    getfattr -R -d -m - --absolute-names . 2>/dev/null | grep -v '^#' | sort)
}
tree "$T/mnt/a" > "$T/tree.a"

# --- the kernel's overlayfs, metacopy=on, over the same layers and this upper
L umount "$T/mnt/a" >/dev/null
opts=$(python3 - "$C/container.json" "$LAYERFS_ROOT" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
root = sys.argv[2]
layers = c["diff_ids"]
print(",".join(["lowerdir+=%s/layers/sha256/%s/diff" % (root, l.split(":", 1)[1]) for l in reversed(layers)]
               + ["datadir+=%s/objects" % root]))
EOF
)
mkdir -p "$T/kwork"
mount -t overlay overlay -o "$opts,upperdir=$C/upper,workdir=$T/kwork,metacopy=on,redirect_dir=on" \
  "$T/mnt/k" || fail "the kernel's overlayfs refused the upper"
tree "$T/mnt/k" > "$T/tree.k"
diff "$T/tree.a" "$T/tree.k" > /dev/null || { diff "$T/tree.a" "$T/tree.k" | head; fail "layerfs and the kernel see different trees"; }
umount "$T/mnt/k"
rm -rf "$T/kwork"

# --- writes after chmod: the data is copied, reads are right
L start a >/dev/null
tree "$T/mnt/a" > "$T/tree.a2"
diff "$T/tree.a" "$T/tree.a2" > /dev/null || { diff "$T/tree.a" "$T/tree.a2" | head; fail "the tree changed across a remount"; }
printf 'tail' >> "$T/mnt/a/usr/lib/f3"
printf 'XYZ' | dd of="$T/mnt/a/usr/lib/big1" bs=1 seek=1000000 conv=notrunc status=none
cmp <(cat "$T/l1/usr/lib/f3"; printf tail) "$T/mnt/a/usr/lib/f3" || fail "f3 after append"
expect_big1() {
  python3 - "$T/l1/usr/lib/big1" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
b[1000000:1000003] = b'XYZ'
sys.stdout.buffer.write(b)
EOF
}
cmp <(expect_big1) "$T/mnt/a/usr/lib/big1" || fail "big1 after a write in the middle"
[ "$(stat -c %a "$T/mnt/a/usr/lib/f3")" = 600 ] || fail "f3 lost its mode on the data copy"
truncate -s 0 "$T/mnt/a/usr/lib/f5"
[ "$(stat -c %s "$T/mnt/a/usr/lib/f5")" = 0 ] || fail "f5 not truncated"
chmod 640 "$T/mnt/a/usr/lib/f9"
mv "$T/mnt/a/usr/lib/f9" "$T/mnt/a/usr/f9-moved"
cmp "$T/l1/usr/lib/f9" "$T/mnt/a/usr/f9-moved" || fail "f9 after chmod and rename"

# --- kill -9 of the daemon, restart: everything as it was
kill -9 "$(daemon_pid)"
sleep 0.5
L umount "$T/mnt/a" >/dev/null 2>&1 || umount -l "$T/mnt/a"
L start a >/dev/null || fail "start after kill -9"
cmp <(cat "$T/l1/usr/lib/f3"; printf tail) "$T/mnt/a/usr/lib/f3" || fail "f3 after kill -9"
cmp <(expect_big1) "$T/mnt/a/usr/lib/big1" || fail "big1 after kill -9"
cmp "$T/l2/usr/share/big2" "$T/mnt/a/usr/share/big2" || fail "big2 after kill -9"
cmp "$T/l1/usr/lib/f9" "$T/mnt/a/usr/f9-moved" || fail "f9 after kill -9"
[ "$(stat -c %s "$T/mnt/a/usr/lib/f5")" = 0 ] || fail "f5 after kill -9"
[ "$(stat -c '%a %u %g' "$T/mnt/a/usr/lib/sub/s3")" = "600 1234 2345" ] || fail "s3 after kill -9"
for i in 1 2 4 6 8 10 20 30; do
  cmp "$T/l1/usr/lib/f$i" "$T/mnt/a/usr/lib/f$i" || fail "f$i after kill -9"
done

# --- commit writes the metadata-only files whole
L -q commit a local/mc:c1 >/dev/null
mkdir "$T/mnt/c"
L mount local/mc:c1 "$T/mnt/c" --read-only >/dev/null
cmp "$T/l2/usr/share/big2" "$T/mnt/c/usr/share/big2" || fail "committed big2"
cmp "$T/l1/usr/lib/f12" "$T/mnt/c/usr/lib/f12" || fail "committed f12"
cmp <(expect_big1) "$T/mnt/c/usr/lib/big1" || fail "committed big1"
[ "$(stat -c %a "$T/mnt/c/usr/lib/f12")" = 600 ] || fail "committed f12's mode"
[ "$(stat -c %Y "$T/mnt/c/usr/share/big2")" = "$(date -d 2021-03-04 +%s)" ] || fail "committed big2's mtime"
echo "PASS"
