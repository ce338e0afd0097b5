#!/usr/bin/env bash
# podman with layerfs as the overlay driver's mount_program (as podman uses
# fuse-overlayfs): a busybox image is pushed to a real registry on 127.0.0.1,
# pulled by podman into a fresh storage root, and `podman run` reads, writes,
# deletes and renames files (a lower directory too) on the layerfs rootfs; the
# outputs, the container's upper dir and a fresh container's view are checked.
source "$SRCDIR/tests/registry/lib.sh"
source "$SRCDIR/tests/runtime/lib.sh"
: "${LAYERFS:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (.ci/install-deps)"; exit 77; }
done
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
  || { echo "SKIP: no static /bin/busybox (package busybox-static, .ci/install-deps)"; exit 77; }

# The flags this kind of machine needs: runc (crun 1.8 refuses cgroups in
# hybrid mode), --ulimit within the hard limits (else the runtime's
# setrlimit fails with EPERM), no network.
PODMAN=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp"
  --storage-driver overlay --storage-opt "overlay.mount_program=$LAYERFS"
  --runtime "$(command -v runc)" --cgroup-manager cgroupfs --events-backend file)
RUN=(run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
podman_cleanup() {
  local m
  "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1 || true
  for m in $(grep -o " $WORK/[^ ]*" /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  cleanup
}
trap podman_cleanup EXIT

start_registry reg
R=127.0.0.1:$REG_reg_PORT
step "build a busybox image, push it, pull it with podman"
busybox_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/img" --format oci --compression gzip --tag v1 \
  --layer "$WORK/t/base" --layer "$WORK/t/top" >/dev/null
push "$WORK/img" v1 "$R/test/busybox:1"
IMG=$R/test/busybox:1
"${PODMAN[@]}" pull -q --tls-verify=false "$IMG" >/dev/null || fail "podman pull $IMG"
prun() { "${PODMAN[@]}" "${RUN[@]}" "$@"; }

step "read: the union of both layers, on a layerfs mount"
out=$(prun "$IMG" sh -c 'cat /data/lower.txt /data/top.txt /data/dir/sub/b; ls /data')
[ "$out" = "$(printf 'lower file\ntop layer\nb in sub\ndir\ndoomed.txt\nlower.txt\ntop.txt')" ] \
  || fail "read: $out"
root_mount=$(prun "$IMG" sh -c 'grep " / " /proc/mounts')
echo "  / inside: $root_mount"
echo "$root_mount" | grep -q '^[^ ]* / fuse\.layerfs ' || fail "/ is not a layerfs mount: $root_mount"

step "write, append, delete, rename a file and a lower directory"
out=$(prun "$IMG" sh -c '
  echo new >/data/new.txt && echo appended >>/data/lower.txt && rm /data/doomed.txt &&
  mv /data/top.txt /data/renamed.txt && mv /data/dir /data/moved && echo c >/data/moved/c &&
  ls /data; cat /data/new.txt /data/lower.txt /data/renamed.txt /data/moved/a /data/moved/sub/b /data/moved/c;
  ls /data/dir 2>/dev/null || echo "dir gone"; cat /data/doomed.txt 2>/dev/null || echo "doomed gone"')
want='lower.txt
moved
new.txt
renamed.txt
new
lower file
appended
top layer
a in dir
b in sub
c
dir gone
doomed gone'
[ "$out" = "$want" ] || fail "changes: got
$out"

step "a fresh container sees the image unchanged"
out=$(prun "$IMG" sh -c 'ls /data; cat /data/lower.txt')
[ "$out" = "$(printf 'dir\ndoomed.txt\nlower.txt\ntop.txt\nlower file')" ] || fail "fresh: $out"

step "a kept container's upper dir holds its changes in overlay format"
"${PODMAN[@]}" run --name keep --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
  "$IMG" sh -c 'echo kept >/data/kept.txt; rm /data/lower.txt; mv /data/dir /data/moved' \
  || fail "run keep"
upper=$("${PODMAN[@]}" inspect --format '{{.GraphDriver.Data.UpperDir}}' keep)
[ -d "$upper" ] || fail "no upper dir '$upper'"
[ "$(cat "$upper/data/kept.txt")" = kept ] || fail "kept.txt not in the upper"
[ "$(stat -c '%F %t:%T' "$upper/data/lower.txt")" = "character special file 0:0" ] \
  || fail "deleted lower file is not a whiteout in the upper"
[ "$(cat "$upper/data/moved/sub/b")" = "b in sub" ] || fail "renamed lower dir not in the upper"
"${PODMAN[@]}" diff keep | sort >"$WORK/diff"
grep -q '^A /data/kept.txt$' "$WORK/diff" && grep -q '^D /data/lower.txt$' "$WORK/diff" \
  || { cat "$WORK/diff"; fail "podman diff does not show the changes"; }
"${PODMAN[@]}" rm keep >/dev/null || fail "podman rm keep"

step "--user resolves in the image; permissions hold on the mount"
out=$(prun --user app "$IMG" sh -c 'id -u; id -g; touch /data/x 2>/dev/null || echo denied; touch /home/app/y && echo mine')
[ "$out" = "$(printf '1000\n1000\ndenied\nmine')" ] || fail "--user app: $out"

step "nothing is left mounted"
left=$(grep -c " $WORK/podman/root/overlay/[^ ]*/merged " /proc/mounts || true)
[ "$left" = 0 ] || fail "$left layerfs mounts left after podman run --rm"
echo PASS
