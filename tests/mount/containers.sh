#!/usr/bin/env bash
# layerctl mount / umount / ps / rm over a real store: many containers from one
# image each see only their own writes, no write changes a byte of the store's
# layers, read-only mounts refuse writes, a container in use blocks rm and rmi,
# and a container whose daemon was killed shows as "daemon dead" until umount
# cleans it up.
set -euo pipefail
: "${LAYERCTL:?}" "${LAYERFS:?}" "${FSOPS:?}" "${BUILDDIR:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
mkimage=${MKIMAGE:-$BUILDDIR/tests/fixtures/mkimage}

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-containers.XXXXXX")
export LAYERFS_ROOT=$T/store
N=6
cleanup() {
  for m in "$T"/mnt/*; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m" || true; fi
  done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
L() { "$LAYERCTL" "$@"; }

# --- an image of two layers
mkdir -p "$T/l1/etc" "$T/l1/data" "$T/l2/etc" "$T/mnt"
printf 'base\n' > "$T/l1/etc/config"
printf 'remove me\n' > "$T/l1/etc/victim"
head -c 3000000 /dev/urandom > "$T/l1/data/blob"
printf 'shared\n' > "$T/l1/data/a" && ln "$T/l1/data/a" "$T/l1/data/b"
printf 'layer2\n' > "$T/l2/etc/config"
"$mkimage" --out "$T/img" --format oci --tag v1 --layer "$T/l1" --layer "$T/l2" >/dev/null
L -q pull "oci:$T/img:v1" >/dev/null
img="oci:$T/img:v1"
layers_sum() {
  for d in "$LAYERFS_ROOT"/layers/sha256/*/diff; do echo "## $d"; "$FSOPS" --raw --root "$d"; done
}
layers_sum > "$T/layers.before"

# --- N containers from one image
for i in $(seq 1 $N); do
  mkdir "$T/mnt/c$i"
  id=$(L mount "$img" "$T/mnt/c$i" --name "c$i")
  [ ${#id} -eq 64 ] || fail "mount printed '$id', not an id"
done
mkdir "$T/mnt/ro"
L mount "$img" "$T/mnt/ro" --name ro --read-only >/dev/null
for i in $(seq 1 $N); do
  m=$T/mnt/c$i
  [ "$(cat "$m/etc/config")" = layer2 ] || fail "c$i: wrong etc/config"
  printf 'mine %s\n' "$i" > "$m/own"
  printf 'changed by %s\n' "$i" >> "$m/etc/config"
  rm "$m/etc/victim"
  printf 'x%s' "$i" >> "$m/data/a"
  dd if=/dev/zero of="$m/data/blob" bs=4096 count=1 seek=$((i * 10)) conv=notrunc status=none
done
for i in $(seq 1 $N); do
  m=$T/mnt/c$i
  [ "$(cat "$m/own")" = "mine $i" ] || fail "c$i does not see its own file"
  [ "$(cat "$m/etc/config")" = "$(printf 'layer2\nchanged by %s' "$i")" ] || fail "c$i: etc/config is '$(cat "$m/etc/config")'"
  [ ! -e "$m/etc/victim" ] || fail "c$i: etc/victim is back"
  [ "$(cat "$m/data/a")" = "$(printf 'shared\nx%s' "$i")" ] || fail "c$i: data/a"
  for j in $(seq 1 $N); do
    [ "$i" = "$j" ] && continue
    [ "$(cat "$m/own")" != "mine $j" ] || fail "c$i sees c$j's file"
  done
  cmp -s <(head -c $((i * 40960)) "$m/data/blob") <(head -c $((i * 40960)) "$T/l1/data/blob") ||
    fail "c$i: data/blob before its own write changed"
done
[ "$(cat "$T/mnt/ro/etc/config")" = layer2 ] || fail "read-only mount sees another container's write"
[ -e "$T/mnt/ro/etc/victim" ] || fail "read-only mount lost etc/victim"
if echo x 2>/dev/null > "$T/mnt/ro/new"; then fail "read-only mount took a write"; fi
layers_sum > "$T/layers.after"
diff -u "$T/layers.before" "$T/layers.after" >/dev/null || fail "a write changed the store's layers"

# --- ps
L ps
L ps --json > "$T/ps.json"
python3 - "$T/ps.json" "$N" <<'PY'
import json, sys
ps = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert len(ps) == n + 1, ps
for c in ps:
    assert c["state"] == "mounted", c
    assert c["pid"] > 0, c
    if c["name"] != "ro":
        assert c["upper_size"] >= 3000000, c   # data/blob was copied up
PY

# --- refusals while in use
if L rm c1 2>"$T/err"; then fail "rm removed a mounted container"; fi
grep -q "mounted" "$T/err" || fail "rm's refusal: $(cat "$T/err")"
if L rmi "$img" 2>"$T/err"; then fail "rmi removed an image a container uses"; fi
if L mount "$img" "$T/mnt/c1" 2>"$T/err"; then fail "mounted twice at one directory"; fi
if L mount "$img" "$T/mnt/ro" --name c2 2>/dev/null; then fail "two containers named c2"; fi
if L mount no-such-image "$T/mnt" 2>"$T/err"; then fail "mounted a missing image"; fi
grep -q "no such image" "$T/err" || fail "missing image message: $(cat "$T/err")"

# --- a busy mount is refused, then unmounts
exec 9<"$T/mnt/c1/own"
if L umount "$T/mnt/c1" 2>/dev/null; then fail "umount of a busy mount succeeded"; fi
exec 9<&-

# --- kill -9 a daemon: "daemon dead", umount cleans up, the upper survives
pid=$(python3 -c 'import json,sys; print([c["pid"] for c in json.load(open(sys.argv[1])) if c["name"]=="c2"][0])' "$T/ps.json")
kill -9 "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
L ps | grep -E '^[0-9a-f]{12} +c2 ' | grep -q "daemon dead" || { L ps; fail "c2 is not shown as daemon dead"; }
if ls "$T/mnt/c2" >/dev/null 2>&1; then fail "dead mount still answers"; fi
if L rm c2 2>/dev/null; then fail "rm removed a container whose dead mount is still there"; fi
L umount "$T/mnt/c2" >/dev/null
mountpoint -q "$T/mnt/c2" && fail "dead mount still mounted after umount"
L ps | grep -E '^[0-9a-f]{12} +c2 ' | grep -q stopped || fail "c2 not stopped after umount"

# --- umount all, the daemons exit; a remount... is a new container with a fresh upper
pids=$(python3 -c 'import json,sys; print(" ".join(str(c["pid"]) for c in json.load(open(sys.argv[1]))))' "$T/ps.json")
for i in 1 $(seq 3 $N); do L umount "$T/mnt/c$i" >/dev/null; done
L umount "$T/mnt/ro" >/dev/null
for p in $pids; do
  if kill -0 "$p" 2>/dev/null && grep -q layerfs "/proc/$p/cmdline" 2>/dev/null; then
    fail "daemon $p still runs after umount"
  fi
done
for m in "$T"/mnt/*; do mountpoint -q "$m" && fail "$m still mounted"; done
[ "$(L ps --json | python3 -c 'import json,sys; print(sorted(set(c["state"] for c in json.load(sys.stdin))))')" = "['stopped']" ] ||
  fail "not every container is stopped"
if L umount "$T/mnt/c1" 2>/dev/null; then fail "umount of an unmounted dir succeeded"; fi

layers_sum > "$T/layers.after"
diff -u "$T/layers.before" "$T/layers.after" >/dev/null || fail "the store's layers changed"

# --- rm, then rmi works
for i in $(seq 1 $N); do L rm "c$i" >/dev/null; done
L rm ro >/dev/null
[ "$(L ps -q | wc -l)" = 0 ] || fail "containers left after rm"
[ -z "$(ls "$LAYERFS_ROOT/containers")" ] || fail "container dirs left after rm"
L rmi "$img" >/dev/null
echo "PASS: $N containers + 1 read-only from one image"
