#!/usr/bin/env bash
# A file hard-linked in a lower layer, copied up (chmod 600 + append) in a
# container, committed and exported with `push IMAGE oci:DIR:TAG`: skopeo
# reads the export, the top layer has no entry of mode 0 or mtime 0, its
# hard-link entry carries its target's mode (as GNU tar writes it, and as
# podman and Docker apply it), and umoci unpacks the image with both names
# one file of mode 0600 and the appended content.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
: "${LAYERFS:?}"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
for tool in skopeo umoci; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (.ci/install-deps)"; exit 77; }
done
export LAYERFS
trap '{ grep -o " $T/[^ ]*" /proc/mounts || true; } | while read -r m; do umount -l "$m"; done; rm -rf "$T"' EXIT

mkdir -p "$T/l/usr/bin" "$T/m"
echo "perl 5" >"$T/l/usr/bin/perl"
chmod 755 "$T/l/usr/bin/perl"
touch -d 2020-01-01 "$T/l/usr/bin/perl"
ln "$T/l/usr/bin/perl" "$T/l/usr/bin/perl5.36"
"$MKIMAGE" --out "$T/img" --format oci --tag t --layer "$T/l" >/dev/null
lc -q pull "oci:$T/img:t" >/dev/null
lc -q mount --name hl "oci:$T/img:t" "$T/m" >/dev/null
chmod 600 "$T/m/usr/bin/perl"
echo "appended" >>"$T/m/usr/bin/perl"
[ "$(stat -c %a "$T/m/usr/bin/perl5.36")" = 600 ] || fail "the other name does not show the chmod"
lc -q umount "$T/m"
lc -q commit hl hardlinks:1 >/dev/null
lc -q push hardlinks:1 "oci:$T/out:v1" >/dev/null || fail "push to oci:"
skopeo inspect "oci:$T/out:v1" >"$T/inspect.json" || fail "skopeo cannot read the export"
grep -q '"Layers"' "$T/inspect.json" || fail "skopeo inspect: $(cat "$T/inspect.json")"

top=$(python3 -c '
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
m = [e for e in idx["manifests"] if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"][0]
man = json.load(open(sys.argv[1] + "/blobs/sha256/" + m["digest"].split(":")[1]))
print(sys.argv[1] + "/blobs/sha256/" + man["layers"][-1]["digest"].split(":")[1])' "$T/out")
tar -tvzf "$top" >"$T/top.txt" || tar -tvf "$top" >"$T/top.txt"
cat "$T/top.txt"
python3 - "$top" <<'PY' || fail "top layer entries are wrong"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    es = {m.name: m for m in t.getmembers()}
for m in es.values():
    assert m.mode != 0, f"{m.name}: mode 0"
    assert m.mtime != 0, f"{m.name}: mtime 0"
links = [m for m in es.values() if m.islnk()]
assert links, "no hard-link entry"
for m in links:
    target = es[m.linkname]
    assert m.mode == target.mode == 0o600, (m.name, oct(m.mode), oct(target.mode))
    assert m.mtime == target.mtime, (m.name, m.mtime, target.mtime)
print("ok:", ", ".join(f"{m.name} -> {m.linkname} {oct(m.mode)}" for m in links))
PY

umoci unpack --image "$T/out:v1" "$T/bundle" >/dev/null 2>&1 || fail "umoci unpack"
r=$T/bundle/rootfs/usr/bin
[ "$(stat -c %a "$r/perl")" = 600 ] && [ "$(stat -c %a "$r/perl5.36")" = 600 ] || fail "modes after unpack: $(stat -c '%n %a' "$r"/*)"
[ "$(stat -c %i "$r/perl")" = "$(stat -c %i "$r/perl5.36")" ] || fail "not one file after unpack"
[ "$(cat "$r/perl5.36")" = "$(printf 'perl 5\nappended')" ] || fail "content: $(cat "$r/perl5.36")"
lc -q rm hl >/dev/null
echo PASS
