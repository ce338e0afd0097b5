#!/usr/bin/env bash
# A real workload: a Debian bookworm image (debootstrap --variant=minbase,
# cached in $LAYERFS_TEST_CACHE, default /var/cache/layerfs-test) is pulled
# into a store and mounted with `layerctl mount`; inside a chroot dpkg
# installs packages from local .debs (fetched once with apt-get download),
# runs them, verifies and removes one. The upper must then show the same
# system through the kernel's overlayfs, and the store's layers are unchanged.
set -euo pipefail
: "${LAYERCTL:?}" "${LAYERFS:?}" "${FSOPS:?}" "${BUILDDIR:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
mkimage=${MKIMAGE:-$BUILDDIR/tests/fixtures/mkimage}
cache=${LAYERFS_TEST_CACHE:-/var/cache/layerfs-test}
rootfs=$cache/bookworm-minbase
debs=$cache/debs
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
pkgs=(hello jq libjq1 libonig5 tree)

mkdir -p "$cache"
exec 8>"$cache/lock"
flock 8   # one builder at a time; later runs reuse the cache
if [ ! -x "$rootfs/usr/bin/dpkg" ]; then
  command -v debootstrap >/dev/null || { echo "SKIP: debootstrap is not installed"; exit 77; }
  echo "building $rootfs with debootstrap from $mirror (first use)"
  rm -rf "$rootfs.tmp"
  if ! debootstrap --variant=minbase bookworm "$rootfs.tmp" "$mirror" > "$cache/debootstrap.log" 2>&1; then
    tail -5 "$cache/debootstrap.log"
    echo "SKIP: debootstrap could not build a Debian rootfs (no archive access?)"
    exit 77
  fi
  mv "$rootfs.tmp" "$rootfs"
fi
if [ "$(ls "$debs"/*.deb 2>/dev/null | wc -l)" -lt ${#pkgs[@]} ]; then
  mkdir -p "$debs.tmp"
  if ! (cd "$debs.tmp" && apt-get download "${pkgs[@]}" > ../apt-download.log 2>&1); then
    tail -5 "$cache/apt-download.log"
    echo "SKIP: apt-get download could not fetch ${pkgs[*]}"
    exit 77
  fi
  rm -rf "$debs" && mv "$debs.tmp" "$debs"
fi
flock -u 8

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-dpkg.XXXXXX")
export LAYERFS_ROOT=$T/store
M=$T/mnt
cleanup() {
  for m in "$T/kmnt" "$M"; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" || true; fi
  done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
in_chroot() { chroot "$M" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C "$@"; }

mkdir -p "$T/debs-layer/debs" "$M" "$T/kmnt" "$T/kwork"
cp "$debs"/*.deb "$T/debs-layer/debs/"
"$mkimage" --out "$T/img" --format oci --compression none --tag bookworm \
  --layer "$rootfs" --layer "$T/debs-layer" > /dev/null
"$LAYERCTL" -q pull "oci:$T/img:bookworm" > /dev/null
layers_sum() {
  for d in "$LAYERFS_ROOT"/layers/sha256/*/diff; do echo "## $d"; "$FSOPS" --raw --root "$d"; done
}
layers_sum > "$T/layers.before"
id=$("$LAYERCTL" mount "oci:$T/img:bookworm" "$M" --name debian)

in_chroot sh -c 'dpkg -i /debs/*.deb' > "$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -i failed"; }
[ "$(in_chroot hello)" = "Hello, world!" ] || fail "hello does not run"
[ "$(echo '{"a":[1,2,{"b":3}]}' | in_chroot jq -c '.a[2].b')" = 3 ] || fail "jq does not run"
in_chroot tree -a /etc/apt > /dev/null || fail "tree does not run"
in_chroot dpkg -s hello | grep -q '^Status: install ok installed' || fail "hello not installed"
out=$(in_chroot dpkg --verify hello jq libjq1 libonig5 tree 2>&1) || fail "dpkg --verify: $out"
[ -z "$out" ] || fail "dpkg --verify found changed files: $out"
in_chroot dpkg -r tree > /dev/null 2>&1 || fail "dpkg -r tree failed"
[ ! -e "$M/usr/bin/tree" ] || fail "tree still installed after dpkg -r"
in_chroot dpkg --audit > "$T/audit" 2>&1 || true
[ ! -s "$T/audit" ] || { cat "$T/audit"; fail "dpkg --audit complains"; }
# an existing binary of the image still works after the dpkg database was rewritten
in_chroot ls /usr/share/doc/hello > /dev/null || fail "ls in chroot"
"$LAYERCTL" umount "$M" > /dev/null

# The upper, mounted by the kernel over the same layers, shows the installed system.
lower=""
for d in $(python3 - "$LAYERFS_ROOT" "$id" <<'PY'
import json, sys
c = json.load(open(f"{sys.argv[1]}/containers/{sys.argv[2]}/container.json"))
ids = c.get("diff_ids") or c.get("layers")
print(" ".join(reversed([d.split(":")[1] for d in ids])))
PY
); do lower="${lower}lowerdir+=$LAYERFS_ROOT/layers/sha256/$d/diff,"; done
# Store format 2: a layer's files are metadata-only entries whose data is the
# store's content objects, a data-only lower layer (docs/store-format-2.md).
mount -t overlay overlay -o "${lower}datadir+=$LAYERFS_ROOT/objects,metacopy=on,redirect_dir=on,upperdir=$LAYERFS_ROOT/containers/$id/upper,workdir=$T/kwork" "$T/kmnt"
[ "$(chroot "$T/kmnt" /usr/bin/hello)" = "Hello, world!" ] || fail "hello does not run on the kernel's overlayfs"
chroot "$T/kmnt" /usr/bin/dpkg -s hello | grep -q '^Status: install ok installed' || fail "kernel view: hello"
[ ! -e "$T/kmnt/usr/bin/tree" ] || fail "kernel view: tree is back"
out=$(chroot "$T/kmnt" /usr/bin/dpkg --verify hello jq 2>&1) && [ -z "$out" ] || fail "kernel view: dpkg --verify: $out"
umount "$T/kmnt"

layers_sum > "$T/layers.after"
cmp -s "$T/layers.before" "$T/layers.after" || fail "the store's layers changed"
"$LAYERCTL" rm debian > /dev/null
echo "PASS: dpkg installed ${#pkgs[@]} packages in a chroot on layerfs, ran them, removed one"
