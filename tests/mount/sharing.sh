#!/usr/bin/env bash
# Store format 2 (issue 19): two images holding the same files in different
# layers, with other mtimes, share one content object per file; through
# layerfs mounts of both (and a kernel overlay mount) the trees are the same
# but for mtimes; reading the files through the second mount adds no page
# cache; fsck is clean; commit from both engines writes the real data and
# no store markers into the new layer.
set -euo pipefail
: "${LAYERCTL:?}" "${LAYERFS:?}" "${BUILDDIR:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
mkimage=${MKIMAGE:-$BUILDDIR/tests/fixtures/mkimage}

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-share.XXXXXX")
export LAYERFS_ROOT=$T/store
# The memory cgroup of the readers (v2, or v1's memory hierarchy).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup/layerfs-share-$$ CACHE_KEY=file
else
  CG=/sys/fs/cgroup/memory/layerfs-share-$$ CACHE_KEY=cache
fi
cleanup() {
  for m in "$T"/mnt/*; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" || true; fi
  done
  [ -d "$CG" ] && rmdir "$CG" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
L() { "$LAYERCTL" "$@"; }

# --- image A: libraries in one layer, other files in another
mkdir -p "$T/a1/usr/lib" "$T/a2/etc" "$T/b/usr/lib" "$T/b/etc" "$T/mnt"
for i in $(seq 1 40); do
  head -c $((20000 + i * 3000)) /dev/urandom > "$T/a1/usr/lib/lib$i.so"
done
chmod 755 "$T/a1/usr/lib/lib1.so"
ln "$T/a1/usr/lib/lib2.so" "$T/a1/usr/lib/lib2-link.so"
printf 'small\n' > "$T/a2/etc/small"
head -c 100000 /dev/urandom > "$T/a2/etc/big.conf"
setfattr -n user.note -v hello "$T/a2/etc/big.conf"
# --- image B: the same files as one layer, every mtime changed
cp -a "$T/a1/." "$T/b/"
cp -a "$T/a2/." "$T/b/"
find "$T/b" -exec touch -h -d 2020-02-02 {} +
"$mkimage" --out "$T/imgA" --format oci --tag v1 --layer "$T/a1" --layer "$T/a2" >/dev/null
"$mkimage" --out "$T/imgB" --format oci --tag v1 --layer "$T/b" >/dev/null

# Layer blobs are not kept (--drop-blobs): the store holds only what is unpacked.
L -q pull --drop-blobs "oci:$T/imgA:v1" >/dev/null
objs_a=$(find "$LAYERFS_ROOT/objects" -type f | wc -l)
du_a=$(du -s --block-size=1 "$LAYERFS_ROOT" | cut -f1)
L -q pull --drop-blobs "oci:$T/imgB:v1" >/dev/null
objs_b=$(find "$LAYERFS_ROOT/objects" -type f | wc -l)
du_b=$(du -s --block-size=1 "$LAYERFS_ROOT" | cut -f1)
[ "$objs_a" -eq 41 ] || fail "image A made $objs_a objects, want 41 (40 libs + big.conf)"
[ "$objs_b" -eq "$objs_a" ] || fail "image B added objects: $objs_a -> $objs_b"
added=$((du_b - du_a))
echo "store: image A $du_a bytes, image B added $added bytes"
[ $((added * 10)) -le "$du_a" ] || fail "image B added $added bytes, more than 10% of $du_a"

# Both layer entries of lib7.so name the same object file.
inodes=$(for d in "$LAYERFS_ROOT"/layers/sha256/*/diff; do
  f=$d/usr/lib/lib7.so
  [ -f "$f" ] || continue
  r=$(getfattr --only-values -n trusted.overlay.redirect "$f")
  stat -c %i "$LAYERFS_ROOT/objects$r"
done | sort -u | wc -l)
[ "$inodes" -eq 1 ] || fail "lib7.so's entries name $inodes objects"

# --- mounts: layerfs A, layerfs B, kernel B
mkdir "$T/mnt/a" "$T/mnt/b" "$T/mnt/k"
L mount "oci:$T/imgA:v1" "$T/mnt/a" --name a >/dev/null
L mount "oci:$T/imgB:v1" "$T/mnt/b" --name b >/dev/null
L mount --kernel "oci:$T/imgB:v1" "$T/mnt/k" --name k >/dev/null
[ "$(stat -f -c %T "$T/mnt/k")" = overlayfs ] || fail "--kernel did not make an overlay mount"

# Names, types, modes, owners, sizes, link counts, contents and xattrs; mtimes differ.
tree() {
  (cd "$1" && find . \( -type d -printf '%p d %m %u %g\n' \) -o -printf '%p %y %m %u %g %s %n\n' |
    sort &&
    find . -type f -print0 | sort -z | xargs -0 sha256sum &&
    getfattr -R -d -m - --absolute-names . 2>/dev/null | grep -v '^#' | sort)
}
tree "$T/mnt/a" > "$T/tree.a"
tree "$T/mnt/b" > "$T/tree.b"
tree "$T/mnt/k" > "$T/tree.k"
diff "$T/tree.a" "$T/tree.b" > /dev/null || { diff "$T/tree.a" "$T/tree.b" | head; fail "trees of A and B differ"; }
diff "$T/tree.b" "$T/tree.k" > /dev/null || { diff "$T/tree.b" "$T/tree.k" | head; fail "layerfs and kernel trees of B differ"; }
grep -q 'user.note="hello"' "$T/tree.b" || fail "xattr of big.conf lost"
cmp "$T/a1/usr/lib/lib3.so" "$T/mnt/b/usr/lib/lib3.so" || fail "lib3.so content"
[ "$(stat -c %Y "$T/mnt/b/usr/lib/lib3.so")" = "$(date -d 2020-02-02 +%s)" ] ||
  fail "B's entry does not keep its own mtime"
[ "$(stat -c %a "$T/mnt/a/usr/lib/lib1.so")" = 755 ] || fail "A's mode"

# --- page cache: the second mount's reads add (almost) nothing
read_all() { cat "$1"/usr/lib/*.so > /dev/null; }
for f in "$LAYERFS_ROOT"/objects/sha256/*/*; do dd if="$f" iflag=nocache count=0 status=none; done
if mkdir "$CG" 2>/dev/null && [ -f "$CG/memory.stat" ]; then
  file_bytes() { awk -v k=$CACHE_KEY '$1 == k {print $2}' "$CG/memory.stat"; }
  (
    echo $BASHPID > "$CG/cgroup.procs"
    read_all "$T/mnt/a"
    f1=$(file_bytes)
    read_all "$T/mnt/b"
    f2=$(file_bytes)
    read_all "$T/mnt/k"
    f3=$(file_bytes)
    echo "page cache: A $f1, +B $((f2 - f1)), +kernel B $((f3 - f2)) bytes"
    libs=$(cat "$T"/a1/usr/lib/*.so | wc -c)
    [ "$f1" -ge $((libs / 2)) ] || { echo "FAIL: reading A charged only $f1 bytes"; exit 1; }
    [ $((f2 - f1)) -le $((libs / 10)) ] || { echo "FAIL: reading B added $((f2 - f1)) bytes"; exit 1; }
    [ $((f3 - f2)) -le $((libs / 10)) ] || { echo "FAIL: the kernel mount added $((f3 - f2)) bytes"; exit 1; }
  ) || fail "page cache is not shared"
else
  echo "note: no memory cgroup here; page cache not measured"
fi

# --- writes: copy-up reads the object; chmod (a metacopy copy-up in the kernel)
printf 'x' >> "$T/mnt/b/usr/lib/lib5.so"
chmod 700 "$T/mnt/k/usr/lib/lib6.so"
printf 'y' >> "$T/mnt/k/usr/lib/lib8.so"
cmp <(cat "$T/a1/usr/lib/lib5.so"; printf x) "$T/mnt/b/usr/lib/lib5.so" || fail "copy-up data (layerfs)"
cmp "$T/a1/usr/lib/lib6.so" "$T/mnt/k/usr/lib/lib6.so" || fail "metacopy copy-up data (kernel)"

# --- fsck, then commit from both engines
L fsck > "$T/fsck.out" || { cat "$T/fsck.out"; fail "fsck is not clean"; }
L -q commit b "local/b:c1" >/dev/null
L -q commit k "local/k:c1" >/dev/null
L umount "$T/mnt/k" >/dev/null
[ "$(L ps --json | python3 -c 'import json,sys; print([c["state"] for c in json.load(sys.stdin) if c["name"] == "k"][0])')" = stopped ] ||
  fail "ps does not show the kernel container stopped"
mkdir "$T/mnt/c1" "$T/mnt/c2"
L mount local/b:c1 "$T/mnt/c1" --read-only >/dev/null
L mount local/k:c1 "$T/mnt/c2" --read-only >/dev/null
cmp "$T/mnt/b/usr/lib/lib5.so" "$T/mnt/c1/usr/lib/lib5.so" || fail "committed lib5.so"
cmp "$T/a1/usr/lib/lib6.so" "$T/mnt/c2/usr/lib/lib6.so" || fail "committed lib6.so (kernel metacopy)"
[ "$(stat -c %a "$T/mnt/c2/usr/lib/lib6.so")" = 700 ] || fail "committed lib6.so mode"
cmp <(cat "$T/a1/usr/lib/lib8.so"; printf y) "$T/mnt/c2/usr/lib/lib8.so" || fail "committed lib8.so"
# No store marker in any blob the commits wrote.
for b in "$LAYERFS_ROOT"/blobs/sha256/*; do
  if (zcat -f "$b" 2>/dev/null || true) | grep -a -q 'overlay\.\(metacopy\|redirect\)'; then
    fail "blob $(basename "$b") carries an overlay marker"
  fi
done
L rm k >/dev/null
echo "PASS"
