# Sourced by the mount smoke tests: skips (exit 77) without /dev/fuse or
# root, makes the test dir $t (/tmp/layerfs-NAME.XXXXXX) and removes it on
# exit, unmounting $t/mnt and $t/*/mnt first.
: "${LAYERFS:?}"
[ -e /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }

t=$(mktemp -d "/tmp/layerfs-${1:?test name}.XXXXXX")
cleanup() {
  local m
  for m in "$t"/mnt "$t"/*/mnt; do
    [ -d "$m" ] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$t"
}
trap cleanup EXIT
