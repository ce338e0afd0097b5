#!/usr/bin/env bash
# Issue 17 §1: no mount layerctl makes hands a host user privilege. The image
# holds a setuid-root copy of id(1) and a 0666 block device node with the
# major:minor of a host loop device whose backing file holds a secret. As
# nobody (setpriv), through `layerctl mount` (nosuid,nodev by default) and
# `layerctl bundle` (rootfs below a 0700 directory), the binary does not run
# as root and the device does not read. --suid/--dev opt back in.
set -euo pipefail
: "${LAYERCTL:?}" "${MKIMAGE:?}"
source "$(dirname "$0")/lib.sh" hostpriv
for tool in setpriv losetup; do command -v $tool >/dev/null || { echo "no $tool"; exit 77; }; done
fail() { echo "FAIL: $*" >&2; exit 1; }
export LAYERFS_ROOT=$t/store
LOOP=
cleanup_all() {
  "$LAYERCTL" umount "$t/mnt" >/dev/null 2>&1 || true
  "$LAYERCTL" umount "$t/mnt2" >/dev/null 2>&1 || true
  "$LAYERCTL" umount "$t/bundle" >/dev/null 2>&1 || true
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
  cleanup
}
trap cleanup_all EXIT
# Host users must be able to reach the mount points themselves.
chmod 0755 "$t"

# A host block device with a secret on it.
printf 'HOST-SECRET-%s\n' "$RANDOM" >"$t/disk.img"
truncate -s 1M "$t/disk.img"
LOOP=$(losetup --find --show "$t/disk.img") || { echo "no loop device"; exit 77; }
maj=$((0x$(stat -c %t "$LOOP"))) min=$((0x$(stat -c %T "$LOOP")))
head -c 11 "$LOOP" | grep -q HOST-SECRET || fail "loop device does not read back"

mkdir -p "$t/tree/bin" "$t/tree/dev"
cp /usr/bin/id "$t/tree/bin/suid-id"
chown 0:0 "$t/tree/bin/suid-id"
chmod 4755 "$t/tree/bin/suid-id"
cp /usr/bin/head "$t/tree/bin/head"
mknod "$t/tree/dev/hostdisk" b "$maj" "$min"
chmod 0666 "$t/tree/dev/hostdisk"
"$MKIMAGE" --out "$t/oci" --format oci --tag t --layer "$t/tree" >/dev/null
"$LAYERCTL" pull -q "oci:$t/oci:t" >/dev/null || fail "pull"

# setpriv keeps root's capabilities until its own execve, so the command's
# path is resolved as root: a shell in between resolves it as nobody.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c 'exec "$@"' sh "$@"; }

# no_privilege ROOTFS: as nobody, the setuid binary keeps euid 65534 (or cannot
# be reached at all) and the device node does not read the host device.
no_privilege() {
  local r=$1 out
  out=$(as_nobody "$r/bin/suid-id" -u 2>&1) || true
  echo "  suid-id -u as nobody: $out"
  [ "$out" != 0 ] || fail "$r: a setuid-root binary gave a host user euid 0"
  out=$(as_nobody head -c 11 "$r/dev/hostdisk" 2>&1) || true
  echo "  head $r/dev/hostdisk as nobody: $out"
  [[ "$out" != *HOST-SECRET* ]] || fail "$r: an image's device node read the host's device"
}

echo "--- layerctl mount (defaults)"
mkdir "$t/mnt"
"$LAYERCTL" -q mount "oci:$t/oci:t" "$t/mnt" >/dev/null || fail "mount"
opts=$(findmnt -n -o OPTIONS "$t/mnt")
echo "  options: $opts"
[[ ",$opts," == *,nosuid,* && ",$opts," == *,nodev,* ]] || fail "mount is not nosuid,nodev: $opts"
# The files are there and usable: the mount itself works for host users.
[ "$(as_nobody "$t/mnt/bin/suid-id" -un)" = nobody ] || fail "suid-id does not run as nobody"
no_privilege "$t/mnt"
"$LAYERCTL" -q umount "$t/mnt" >/dev/null

echo "--- layerctl mount --suid --dev (opted in: privilege is back, as documented)"
"$LAYERCTL" mount --help | grep -q -- "--suid" || fail "--help lacks --suid"
"$LAYERCTL" mount --help | grep -q -- "--dev" || fail "--help lacks --dev"
mkdir "$t/mnt2"
"$LAYERCTL" -q mount --suid --dev "oci:$t/oci:t" "$t/mnt2" >/dev/null || fail "mount --suid --dev"
[ "$(as_nobody "$t/mnt2/bin/suid-id" -u)" = 0 ] || fail "--suid did not keep the setuid bit"
"$LAYERCTL" -q umount "$t/mnt2" >/dev/null

echo "--- layerctl bundle"
"$LAYERCTL" -q bundle "oci:$t/oci:t" "$t/bundle" -- /bin/suid-id >/dev/null || fail "bundle"
stat -c '%a %u' "$t/bundle"
[ "$(stat -c '%a %u' "$t/bundle")" = "700 0" ] || fail "bundle dir is not root's and 0700"
opts=$(findmnt -n -o OPTIONS "$t/bundle/rootfs")
echo "  options: $opts"
[[ ",$opts," == *,nodev,* ]] || fail "bundle rootfs is not nodev: $opts"
no_privilege "$t/bundle/rootfs"
# Root (the runtime) still sees the setuid bit.
[ "$(stat -c %a "$t/bundle/rootfs/bin/suid-id")" = 4755 ] || fail "setuid bit lost in the bundle"
"$LAYERCTL" -q umount "$t/bundle" >/dev/null
echo PASS
