#!/usr/bin/env bash
# Issue 17 §2: the overlay's own xattrs are private in both namespaces,
# whichever one the mount keeps its markers in (trusted.overlay.* as root,
# user.overlay.* with -o userxattr): setting redirect, opaque, origin,
# metacopy... through the mount fails, and listing shows none of them. The
# attack it stops: a host user in a world-writable directory that also
# exists below sets a redirect to a 0700 directory and reads through it.
set -euo pipefail
: "${LAYERFS:?}"
source "$(dirname "$0")/lib.sh" privxattr
command -v setfattr >/dev/null || { echo "no setfattr (attr)"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
chmod 0755 "$t"
# setpriv keeps root's capabilities until its own execve, so the command's
# path is resolved as root: a shell in between resolves it as nobody.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c 'exec "$@"' sh "$@"; }

mkdir -p "$t/lower/tmp" "$t/lower/secret" "$t/lower/marked"
chmod 1777 "$t/lower/tmp"
chmod 0700 "$t/lower/secret"
echo "root only" >"$t/lower/secret/private"
chmod 0600 "$t/lower/secret/private"
setfattr -n trusted.overlay.opaque -v y "$t/lower/marked"
setfattr -n user.overlay.opaque -v y "$t/lower/marked"
setfattr -n user.note -v kept "$t/lower/marked"

for mode in trusted userxattr; do
  echo "--- mount mode: $mode"
  opts=""
  [ "$mode" = userxattr ] && opts=",userxattr"
  rm -rf "$t/upper" "$t/work"
  mkdir -p "$t/upper" "$t/work" "$t/mnt"
  "$LAYERFS" -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work$opts" "$t/mnt" \
    || fail "mount ($mode)"
  mkdir "$t/mnt/mine"
  for ns in trusted user; do
    for x in redirect opaque origin metacopy impure nlink upper whiteout layerfs.origin; do
      name=$ns.overlay.$x
      if setfattr -n "$name" -v /secret "$t/mnt/mine" 2>/dev/null; then
        fail "$mode: setfattr $name through the mount succeeded"
      fi
    done
  done
  for d in mine marked; do
    listed=$(getfattr -d -m - --absolute-names "$t/mnt/$d" 2>/dev/null | grep -v '^#' || true)
    echo "  $d lists: $(echo $listed)"
    [[ "$listed" != *overlay.* ]] || fail "$mode: an overlay xattr is listed on $d: $listed"
  done
  getfattr -n user.note --only-values "$t/mnt/marked" | grep -q kept || fail "$mode: a plain xattr is hidden"
  # The redirect attack, as a host user.
  as_nobody mkdir "$t/mnt/tmp/mine"
  if as_nobody setfattr -n user.overlay.redirect -v /secret "$t/mnt/tmp/mine" 2>/dev/null; then
    fail "$mode: nobody set user.overlay.redirect"
  fi
  echo 2 >/proc/sys/vm/drop_caches
  if out=$(as_nobody cat "$t/mnt/tmp/mine/private" 2>/dev/null); then
    fail "$mode: nobody read the 0700 directory through a redirect: $out"
  fi
  umount "$t/mnt"
done
echo PASS
