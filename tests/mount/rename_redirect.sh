#!/usr/bin/env bash
# Renaming a lower directory writes a redirect, not a copy (issue 18, item 6):
# a lower directory holding 8 MiB, renamed within its parent and then into
# another directory, leaves under 1 MiB in the upper, keeps its st_ino, and
# a new layerfs mount and the kernel's overlayfs with redirect_dir=on,
# mounting the upper afterwards, show the same tree as layerfs did.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" rename-redirect
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || { echo "SKIP: no overlayfs in this kernel"; exit 77; }

mkdir -p "$t"/{lower,upper,work,mnt} "$t"/lower/big/sub "$t"/lower/other
for i in 1 2 3 4 5 6 7; do head -c 1M /dev/urandom > "$t/lower/big/f$i"; done
head -c 1M /dev/urandom > "$t/lower/big/sub/g"
printf 'other\n' > "$t/lower/other/keep"

view() {  # MNT: every name with its type and content checksum
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
     if [ -f "$p" ]; then echo "$p $(sha1sum < "$p" | cut -c1-12)"; else echo "$p $(stat -c %F "$p")"; fi
   done)
}

"$LAYERFS" -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work,redirect_dir=on" "$t/mnt"
for i in $(seq 1 100); do findmnt -n --mountpoint "$t/mnt" | grep -q fuse && break; sleep 0.05; done
ino=$(stat -c %i "$t/mnt/big")
mv "$t/mnt/big" "$t/mnt/moved"
mv "$t/mnt/moved" "$t/mnt/other/deeper"
ino2=$(stat -c %i "$t/mnt/other/deeper")
printf 'new\n' > "$t/mnt/other/deeper/sub/added"
# into a directory with nothing below: the redirect alone finds the lowers
mkdir "$t/mnt/fresh"
mv "$t/mnt/other/deeper/sub" "$t/mnt/fresh/sub"
view "$t/mnt" > "$t/layerfs.view"
umount "$t/mnt"

fail=0
[ "$ino" = "$ino2" ] || { echo "FAIL: st_ino changed across the renames ($ino, $ino2)"; fail=1; }
used=$(du -sk "$t/upper" | cut -f1)
echo "upper after moving 8 MiB: ${used} KiB"
[ "$used" -lt 1024 ] || { echo "FAIL: the upper holds ${used} KiB (a copy, not a redirect)"; fail=1; }
grep -q '^./other/deeper/f7 ' "$t/layerfs.view" || { echo "FAIL: moved files missing"; fail=1; }
grep -q '^./fresh/sub/g ' "$t/layerfs.view" || { echo "FAIL: moved files missing"; fail=1; }

# A new mount of the upper shows the same tree.
"$LAYERFS" -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work,redirect_dir=on" "$t/mnt"
for i in $(seq 1 100); do findmnt -n --mountpoint "$t/mnt" | grep -q fuse && break; sleep 0.05; done
view "$t/mnt" > "$t/layerfs.view2"
umount "$t/mnt"
if ! diff -u --label "layerfs" --label "layerfs, mounted again" "$t/layerfs.view" "$t/layerfs.view2"; then
  echo "FAIL: a new mount of the upper shows another tree"
  fail=1
fi

mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work,redirect_dir=on" "$t/mnt"
view "$t/mnt" > "$t/kernel.view"
umount "$t/mnt"
if ! diff -u --label layerfs --label "kernel (redirect_dir=on)" "$t/layerfs.view" "$t/kernel.view"; then
  echo "FAIL: the kernel's overlayfs shows another tree over the same upper"
  fail=1
fi
exit $fail
