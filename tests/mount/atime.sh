#!/usr/bin/env bash
# atime mount options (issue 18): every option the kernel's mount takes
# (relatime, norelatime, strictatime, atime, noatime, diratime, nodiratime)
# mounts, and reads change what stat shows through the mount as they do
# through the kernel's overlayfs with the same option, with and without
# FUSE passthrough: a lower file's atime never changes; an upper file's
# does per the rule (noatime: never; relatime: once it is older than the
# mtime; strictatime: at every read); a directory's per the rule and
# nodiratime.
set -euo pipefail
source "$(dirname "$0")/lib.sh" atime

trap 'umount "$t/mnt" 2>/dev/null || true; umount "$t/fs" 2>/dev/null || umount -l "$t/fs" 2>/dev/null || true; cleanup' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The layers on a relatime tmpfs of their own, as on most hosts.
mkdir -p "$t/fs" "$t/mnt"
mount -t tmpfs -o relatime tmpfs "$t/fs"
mkdir -p "$t/fs/l/d"
echo lower >"$t/fs/l/f"
echo lower >"$t/fs/l/d/x"

old=978307200    # 2001-01-01
future=1893456000  # 2030-01-01
# probe ENGINE OPTS: one line of what stat shows after reads through it
probe() {
  local engine=$1 o=$2 m=$t/mnt
  rm -rf "$t/fs/u" "$t/fs/w"
  mkdir -p "$t/fs/u" "$t/fs/w"
  touch -a -d @$old "$t/fs/l/f" "$t/fs/l/d"
  local dirs="lowerdir=$t/fs/l,upperdir=$t/fs/u,workdir=$t/fs/w"
  if [ "$engine" = kernel ]; then
    mount -t overlay overlay -o "$dirs,$o" "$m" || fail "kernel: mount -o $o"
  else
    "$LAYERFS" -o "$dirs,$o,$engine" "$m" || fail "layerfs: mount -o $o"
  fi
  local lower upper1 upper2 upper3 dir
  cat "$m/f" >/dev/null
  lower=$(stat -c %X "$m/f")
  echo new >"$m/g"
  touch -a -d @$old "$m/g"
  cat "$m/g" >/dev/null
  upper1=$([ "$(stat -c %X "$m/g")" = $old ] && echo kept || echo updated)
  touch -a -d @$future "$m/g"
  cat "$m/g" >/dev/null
  upper2=$([ "$(stat -c %X "$m/g")" = $future ] && echo kept || echo updated)
  mkdir "$m/e"
  touch "$m/e/y"
  touch -a -d @$old "$m/e"
  ls "$m/e" >/dev/null
  dir=$([ "$(stat -c %X "$m/e")" = $old ] && echo kept || echo updated)
  umount "$m"
  echo "lower:$([ "$lower" = $old ] && echo kept || echo updated) upper-old:$upper1 upper-future:$upper2 dir:$dir"
}

for o in relatime norelatime strictatime atime noatime diratime nodiratime noatime,nodiratime \
         strictatime,nodiratime noatime,relatime noatime,strictatime; do
  want=$(probe kernel "$o")
  for pt in passthrough=1 passthrough=0; do
    got=$(probe "$pt" "$o")
    [ "$got" = "$want" ] || fail "-o $o,$pt: layerfs shows '$got', the kernel's overlayfs '$want'"
  done
  echo "ok: -o $o: $want"
done
