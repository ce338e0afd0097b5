#!/usr/bin/env bash
# Rootless: layerfs in a user namespace (no CAP_SYS_ADMIN in the initial one,
# as for rootless podman) without -o userxattr. trusted.* xattrs cannot be
# set there, so layerfs keeps its markers in user.overlay.* by itself, and
# the kernel refuses passthrough backing files, so reads fall back to the
# cached path. Copy-up, whiteouts and opaque dirs work and survive a
# remount; a later privileged mount of the same upper keeps to user.overlay.*
# (the workdir records the choice), so the upper never holds a trusted.* xattr.
set -euo pipefail
: "${LAYERFS:?}"
[ -e /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }
unshare -Urm true 2>/dev/null || { echo "no user namespaces"; exit 77; }

t=$(mktemp -d /var/tmp/layerfs-rootless.XXXXXX)
trap 'umount -l "$t/m" 2>/dev/null || true; rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$t/l/d/sub" "$t/u" "$t/w" "$t/m"
echo lower >"$t/l/d/f"
echo gone >"$t/l/d/g"
echo old >"$t/l/d/sub/x"
mkdir -p "$t/l/e/sub2"
echo z >"$t/l/e/sub2/z"

# Runs its arguments in a new user and mount namespace, with the mount up.
in_userns() {
  LAYERFS=$LAYERFS T=$t unshare -Urm bash -euo pipefail -c '
    "$LAYERFS" -o "lowerdir=$T/l,upperdir=$T/u,workdir=$T/w,log=$T/log" "$T/m"
    for _ in $(seq 100); do grep -q " $T/m fuse.layerfs " /proc/self/mounts && break; sleep 0.05; done
    trap "umount \"$T/m\"" EXIT
    m=$T/m
    '"$1"
}

in_userns '
  [ "$(cat "$m/d/f")" = lower ]
  echo upper >>"$m/d/f"
  rm "$m/d/g"
  rm -r "$m/d/sub"
  mkdir "$m/d/sub"
  echo new >"$m/d/sub/y"
' || fail "changes in the user namespace failed: $(tail -5 "$t/log")"
grep -q "overlay markers in user.overlay" "$t/log" || fail "no log line about user.overlay.*: $(cat "$t/log")"
grep -q "passthrough: off" "$t/log" || fail "passthrough did not fall back: $(grep passthrough "$t/log")"

in_userns '
  [ "$(cat "$m/d/f")" = "lower
upper" ] || { echo "f: $(cat "$m/d/f")"; exit 1; }
  [ ! -e "$m/d/g" ] || { echo "g is back"; exit 1; }
  [ "$(ls "$m/d/sub")" = y ] || { echo "sub: $(ls "$m/d/sub")"; exit 1; }
  [ "$(ls "$m/d")" = "f
sub" ] || { echo "d: $(ls "$m/d")"; exit 1; }
' || fail "a second mount does not see the changes"

# A privileged mount of the same upper keeps to user.overlay.* (the workdir
# remembers the choice): it sees the changes, and its own go there too.
[ -e "$t/w/layerfs-userxattr" ] || fail "the workdir does not record the choice"
"$LAYERFS" -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m"
[ "$(cat "$t/m/d/f")" = "lower
upper" ] || fail "privileged mount: f: $(cat "$t/m/d/f")"
[ ! -e "$t/m/d/g" ] || fail "privileged mount: the whiteout of g is not seen"
[ "$(ls "$t/m/d/sub")" = y ] || fail "privileged mount: sub is not opaque: $(ls "$t/m/d/sub")"
rm -r "$t/m/e/sub2"
mkdir "$t/m/e/sub2"
[ -z "$(ls "$t/m/e/sub2")" ] || fail "privileged mount: the new sub2 shows $(ls "$t/m/e/sub2")"
umount "$t/m"

python3 - "$t/u" <<'PY' || fail "upper xattrs"
import os, sys
seen = set()
for root, dirs, files in os.walk(sys.argv[1]):
    for n in dirs + files:
        p = os.path.join(root, n)
        for x in os.listxattr(p, follow_symlinks=False):
            assert not x.startswith("trusted."), (p, x)
            seen.add(x)
assert "user.overlay.opaque" in seen, seen
print("upper xattrs:", sorted(seen))
PY
echo ok
