#!/usr/bin/env bash
# layerctl bundle + runc: an image around a static busybox is pulled into a
# store, turned into OCI bundles and run with `runc run`; the program's output,
# its user, and its writes, deletes and renames are checked where they land:
# in the container's upper dir (whiteouts for deleted lower files), with the
# store's layers unchanged. crun is tried too where it is installed.
set -euo pipefail
: "${LAYERCTL:?}" "${LAYERFS:?}" "${MKIMAGE:?}" "${SRCDIR:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
for tool in runc umoci; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (.ci/install-deps)"; exit 77; }
done
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
  || { echo "SKIP: no static /bin/busybox (package busybox-static, .ci/install-deps)"; exit 77; }
source "$SRCDIR/tests/runtime/lib.sh"

T=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-runc.XXXXXX")
export LAYERFS_ROOT=$T/store
RUNC=(runc --root "$T/runc-state")
cleanup() {
  local id m
  for id in $("${RUNC[@]}" list -q 2>/dev/null); do "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true; done
  for m in $(grep -o " $T/[^ ]*" /proc/mounts | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $(date +%T) $*"; }
# expect_fail PATTERN CMD...: CMD fails with one line on stderr matching PATTERN.
expect_fail() {
  local pattern=$1 out rc=0
  shift
  out=$("$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -ne 0 ] || fail "'$*' succeeded"
  echo "$out" | grep -Eq -- "$pattern" || fail "'$*': '$out', expected /$pattern/"
  [ "$(echo "$out" | wc -l)" -eq 1 ] || fail "'$*': more than one line: $out"
  echo "  ok: $out"
}

step "build the image (busybox, two layers) and pull it"
busybox_trees "$T/t"
"$MKIMAGE" --out "$T/img" --format oci --compression gzip --tag v1 \
  --layer "$T/t/base" --layer "$T/t/top" >/dev/null
umoci config --image "$T/img:v1" --config.entrypoint /bin/sh --config.cmd /srv/run.sh \
  --config.env GREETING=hello --config.workingdir /srv
umoci config --image "$T/img:v1" --tag app --clear config.entrypoint --config.user app:staff --config.workingdir "" \
  --config.cmd /bin/id
"$LAYERCTL" -q pull "oci:$T/img:v1" >/dev/null
"$LAYERCTL" -q pull "oci:$T/img:app" >/dev/null
lower_sum() { find "$LAYERFS_ROOT/layers" -type f -exec sha256sum {} + | sort; }
lower_sum >"$T/layers.before"

step "bundle and runc run: the image's Entrypoint + Cmd, Env, WorkingDir"
id=$("$LAYERCTL" bundle "oci:$T/img:v1" "$T/b1" --name web)
[ -f "$T/b1/config.json" ] || fail "no config.json"
[ "$(findmnt -n -o FSTYPE "$T/b1/rootfs")" = fuse.layerfs ] || fail "$T/b1/rootfs is not a layerfs mount"
python3 - "$T/b1/config.json" "$T/b1/rootfs" <<'PY' || fail "config.json is not what the image says"
import json, sys
c = json.load(open(sys.argv[1]))
p = c["process"]
assert p["args"] == ["/bin/sh", "/srv/run.sh"], p["args"]
assert "GREETING=hello" in p["env"] and any(e.startswith("PATH=") for e in p["env"]), p["env"]
assert p["cwd"] == "/srv" and p["user"] == {"uid": 0, "gid": 0} and p["terminal"] is False, p
assert c["root"] == {"path": sys.argv[2], "readonly": False}, c["root"]
assert c["hostname"] == "web"
assert [n["type"] for n in c["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
assert {m["destination"] for m in c["mounts"]} >= {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"}
PY
"${RUNC[@]}" run -b "$T/b1" "lt-$$-1" </dev/null >"$T/out1" 2>"$T/err1" \
  || { cat "$T/err1"; fail "runc run failed"; }
cat >"$T/want1" <<'EOF2'
greeting=hello cwd=/srv host=web uid=0 gid=0 groups=0 home=/root
lower file
top layer
done
EOF2
diff -u "$T/want1" "$T/out1" || fail "unexpected output from the container"

step "its changes are in the container's upper dir, as overlay format"
U=$LAYERFS_ROOT/containers/$id/upper
[ "$(cat "$U/data/new.txt")" = "written in the container" ] || fail "new.txt not in the upper"
[ "$(cat "$U/data/lower.txt")" = "$(printf 'lower file\nappended')" ] || fail "lower.txt not copied up"
[ "$(stat -c '%F %t:%T' "$U/data/doomed.txt")" = "character special file 0:0" ] \
  || fail "deleted lower file is not a whiteout: $(stat -c '%F %t:%T' "$U/data/doomed.txt" 2>&1)"
[ "$(stat -c '%F %t:%T' "$U/data/top.txt")" = "character special file 0:0" ] \
  || fail "renamed lower file left no whiteout"
[ "$(cat "$U/data/renamed.txt")" = "top layer" ] || fail "renamed.txt not in the upper"
[ ! -e "$T/b1/rootfs/data/doomed.txt" ] || fail "deleted file still visible on the mount"
[ "$(cat "$T/b1/rootfs/data/new.txt")" = "written in the container" ] || fail "mount does not show new.txt"
lower_sum | diff -q "$T/layers.before" - >/dev/null || fail "the store's layers changed"

step "the same bundle runs again and sees its earlier changes"
python3 - "$T/b1/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["/bin/sh", "-c", "cat /data/new.txt; ls /data"]
json.dump(c, open(sys.argv[1], "w"))
PY
out=$("${RUNC[@]}" run -b "$T/b1" "lt-$$-2" </dev/null)
[ "$out" = "$(printf 'written in the container\ndir\nlower.txt\nnew.txt\nrenamed.txt')" ] \
  || fail "second run saw: $out"

step "User from /etc/passwd and /etc/group of the image; a command after --"
"$LAYERCTL" -q bundle "oci:$T/img:app" "$T/b2" --name app1 -- >/dev/null \
  sh -c 'id -u; id -g; id -G; echo $HOME; pwd; touch /home/app/mine; touch /data/x 2>&1 || echo denied'
out=$("${RUNC[@]}" run -b "$T/b2" "lt-$$-3" </dev/null 2>&1)
want=$(printf '1000\n50\n50 29\n/home/app\n/\n')
[ "$(echo "$out" | head -5)" = "$want" ] || fail "user app: got '$out'"
echo "$out" | tail -1 | grep -q denied || fail "user app could write to root's /data: $out"
id2=$("$LAYERCTL" ps --json | python3 -c 'import json,sys; print([c["id"] for c in json.load(sys.stdin) if c["name"]=="app1"][0])')
[ "$(stat -c %u:%g "$LAYERFS_ROOT/containers/$id2/upper/home/app/mine")" = 1000:50 ] \
  || fail "app's file has the wrong owner in the upper"
"$LAYERCTL" -q bundle "oci:$T/img:app" "$T/b3" --name idc -- /bin/id -u -n >/dev/null
out=$("${RUNC[@]}" run -b "$T/b3" "lt-$$-4" </dev/null)
[ "$out" = app ] || fail "Entrypoint-less image with a command: $out"

step "crun, where installed"
n_containers=3
if command -v crun >/dev/null; then
  "$LAYERCTL" -q bundle "oci:$T/img:v1" "$T/b4" -- cat /data/lower.txt >/dev/null
  n_containers=4
  if out=$(crun --root "$T/crun-state" run -b "$T/b4" "lt-$$-5" </dev/null 2>&1); then
    [ "$out" = "lower file" ] || fail "crun run: $out"
    echo "  ok: crun ran the bundle"
  elif echo "$out" | grep -q "hybrid"; then
    echo "  crun skipped: it refuses this machine's cgroup setup: $out"
  else
    fail "crun run: $out"
  fi
else
  echo "  crun is not installed: skipped"
fi

step "errors: one line each"
expect_fail "no such image" "$LAYERCTL" bundle nosuch:latest "$T/b9"
expect_fail "not empty" "$LAYERCTL" bundle "oci:$T/img:v1" "$T/b1"
expect_fail "a container has that name" "$LAYERCTL" bundle "oci:$T/img:v1" "$T/b9" --name web
[ ! -e "$T/b9" ] || fail "a failed bundle left $T/b9 behind"
expect_fail "bad --name" "$LAYERCTL" bundle "oci:$T/img:v1" "$T/b9" --name 'a/b'
expect_fail "wants IMAGE and DIR" "$LAYERCTL" bundle "oci:$T/img:v1"
expect_fail "No such file" "$LAYERCTL" bundle "oci:$T/img:v1" "$T/nope/b"
umoci config --image "$T/img:v1" --tag nocmd --clear config.entrypoint --clear config.cmd
"$LAYERCTL" -q pull "oci:$T/img:nocmd" >/dev/null
expect_fail "no Entrypoint or Cmd" "$LAYERCTL" bundle "oci:$T/img:nocmd" "$T/b9"
[ ! -e "$T/b9" ] || fail "a failed bundle left $T/b9 behind"
umoci config --image "$T/img:v1" --tag nouser --config.user ghost
"$LAYERCTL" -q pull "oci:$T/img:nouser" >/dev/null
expect_fail "'ghost': not found in the image's /etc/passwd" "$LAYERCTL" bundle "oci:$T/img:nouser" "$T/b9"
[ ! -e "$T/b9" ] || fail "a failed bundle left $T/b9 behind"
"$LAYERCTL" ps | grep -q ghost && fail "a failed bundle left a container"
[ "$("$LAYERCTL" ps --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = "$n_containers" ] \
  || fail "expected $n_containers containers: $("$LAYERCTL" ps)"
"$LAYERCTL" bundle --help | grep -q "runc run -b DIR" || fail "bundle --help"

step "umount (by bundle dir, rootfs dir or name) and rm clean up like any container"
"$LAYERCTL" -q umount "$T/b1"
"$LAYERCTL" -q umount "$T/b2/rootfs"
"$LAYERCTL" -q umount idc
for b in b1 b2 b3; do [ -z "$(findmnt -n "$T/$b/rootfs")" ] || fail "$b still mounted"; done
"$LAYERCTL" -q rm web app1 idc
[ ! -e "$LAYERFS_ROOT/containers/$id" ] || fail "rm left the container's dir"
"$LAYERCTL" ps | grep -q web && fail "web still listed"
echo "PASS"
