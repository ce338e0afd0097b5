#!/usr/bin/env bash
# fuse-overlayfs's own xattrs and options, as fuse-overlayfs documents and
# behaves (issue 18, item 5): its private xattrs (user.fuseoverlayfs.*, and
# the trusted. and security. forms) are neither listed nor readable nor
# settable through the mount; noxattrs=1 mounts with no xattrs (EOPNOTSUPP);
# static_nlink shows every directory with one link; a `.wh..wh..opq` entry in
# an upper directory makes it opaque and is itself hidden.
# Usage: fuseoverlayfs_compat.sh [ENGINE]   (default: $LAYERFS; the checks
# pass with fuse-overlayfs too, but for the security./trusted. forms, which
# it lists).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh" fuseoverlayfs-compat
engine=${1:-$LAYERFS}
command -v getfattr >/dev/null || { echo "SKIP: no getfattr (attr)"; exit 77; }

fail=0
check() {  # WHAT EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: expected '$2', got '$3'"; fail=1; fi
}

mkdir -p "$t"/{lower,upper,work,mnt}
mkdir -p "$t"/lower/x "$t"/lower/opq/below "$t"/lower/tree/a/b "$t"/lower/tree/c
printf 'x\n' > "$t"/lower/x/file
printf 'a\n' > "$t"/lower/opq/a
setfattr -n user.fuseoverlayfs.origin -v o "$t"/lower/x/file
setfattr -n user.fuseoverlayfs.opaque -v y "$t"/lower/x/file
setfattr -n trusted.fuseoverlayfs.thing -v t "$t"/lower/x/file
setfattr -n security.fuseoverlayfs.override_stat -v 0:0:0644 "$t"/lower/x/file
setfattr -n user.keep -v k "$t"/lower/x/file
# The upper, as fuse-overlayfs leaves it: opq/ is opaque by its marker.
mkdir -p "$t"/upper/opq "$t"/upper/tree/up/sub
printf 'b\n' > "$t"/upper/opq/b
: > "$t"/upper/opq/.wh..wh..opq

mount_it() {  # EXTRA-OPTS
  "$engine" -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work${1:+,$1}" "$t/mnt"
  local i
  for i in $(seq 1 100); do
    findmnt -n --mountpoint "$t/mnt" | grep -q fuse && return 0
    sleep 0.05
  done
  echo "FAIL: $engine did not mount with '$1'"
  exit 1
}
umount_it() { umount "$t/mnt"; }

m=$t/mnt
mount_it ""
names=$(getfattr -d -m - --absolute-names "$m/x/file" 2>/dev/null | grep -v -e '^#' -e '^$' | cut -d= -f1 |
        grep -v '^security.selinux' | sort | tr '\n' ' ')
check "getfattr -d lists only the file's own xattrs" "user.keep " "$names"
for n in user.fuseoverlayfs.origin trusted.fuseoverlayfs.thing security.fuseoverlayfs.override_stat; do
  if getfattr -n "$n" "$m/x/file" >/dev/null 2>&1; then r=readable; else r=hidden; fi
  check "getfattr -n $n" hidden "$r"
done
if setfattr -n user.fuseoverlayfs.new -v 1 "$m/x/file" 2>/dev/null; then r=set; else r=refused; fi
check "setfattr -n user.fuseoverlayfs.new" refused "$r"
check "user.keep reads" k "$(getfattr --only-values -n user.keep "$m/x/file" 2>/dev/null)"
# The opaque marker in the upper: the lower's entries are gone, the marker unseen.
check "ls of an upper dir with .wh..wh..opq" "b" "$(ls -A "$m/opq" | tr '\n' ' ' | sed 's/ $//')"
if [ -e "$m/opq/a" ]; then r=visible; else r=hidden; fi
check "a lower name under the marker" hidden "$r"
if [ -e "$m/opq/.wh..wh..opq" ]; then r=visible; else r=hidden; fi
check "the marker by name" hidden "$r"
# Without static_nlink a merged directory counts its subdirectories.
check "nlink of a merged directory" 5 "$(stat -c %h "$m/tree")"
umount_it

mount_it "static_nlink"
for d in tree tree/a tree/up tree/up/sub x opq; do
  check "static_nlink: nlink of $d" 1 "$(stat -c %h "$m/$d")"
done
umount_it

mount_it "noxattrs=1"
out=$(getfattr -n user.keep "$m/x/file" 2>&1 || true)
case $out in *"Operation not supported"*) r=ENOTSUP ;; *) r="$out" ;; esac
check "noxattrs=1: getfattr" ENOTSUP "$r"
out=$(setfattr -n user.new -v 1 "$m/x/file" 2>&1 || true)
case $out in *"Operation not supported"*) r=ENOTSUP ;; *) r="$out" ;; esac
check "noxattrs=1: setfattr" ENOTSUP "$r"
check "noxattrs=1: files still read" x "$(cat "$m/x/file")"
umount_it

exit $fail
