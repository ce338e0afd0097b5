#!/usr/bin/env python3
"""Copies an OCI layout (one image, gzip layers) and breaks it one way.

usage: mutate_layout.py MUTATION SRC DST
Documents that are edited are re-hashed and re-linked (so only the intended
fault remains) unless the mutation is about the hash or size itself.
"""
import hashlib, json, os, shutil, sys

mutation, src, dst = sys.argv[1:4]
shutil.copytree(src, dst, symlinks=True)
blobs = os.path.join(dst, "blobs", "sha256")

def read(d): return open(os.path.join(blobs, d.split(":")[1]), "rb").read()
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, h), "wb").write(data)
    return "sha256:" + h

index = json.load(open(os.path.join(dst, "index.json")))
mdesc = index["manifests"][0]
manifest = json.loads(read(mdesc["digest"]))
config = json.loads(read(manifest["config"]["digest"]))

def save(config_changed=True, manifest_changed=True, fix_sizes=True):
    if config_changed:
        data = json.dumps(config).encode()
        manifest["config"]["digest"] = put(data)
        if fix_sizes: manifest["config"]["size"] = len(data)
    if manifest_changed:
        data = json.dumps(manifest).encode()
        mdesc["digest"] = put(data)
        if fix_sizes: mdesc["size"] = len(data)
    json.dump(index, open(os.path.join(dst, "index.json"), "w"))

m = mutation
if m == "config-content":          # config bytes no longer match their digest
    p = os.path.join(blobs, manifest["config"]["digest"].split(":")[1])
    data = open(p, "rb").read()
    open(p, "wb").write(data.replace(b'"os"', b'"OS"'))
elif m == "config-size":           # manifest claims another config size
    manifest["config"]["size"] += 1; save(config_changed=False)
elif m == "manifest-size":         # index.json claims another manifest size
    mdesc["size"] -= 1; json.dump(index, open(os.path.join(dst, "index.json"), "w"))
elif m == "manifest-content":      # manifest bytes no longer match index.json's digest
    p = os.path.join(blobs, mdesc["digest"].split(":")[1])
    data = open(p, "rb").read()
    open(p, "wb").write(data.replace(b"schemaVersion", b"schemaVersioN"))
elif m == "rootfs-type":
    config["rootfs"]["type"] = "snapshot"; save()
elif m == "diff-ids-fewer":
    config["rootfs"]["diff_ids"].pop(); save()
elif m == "diff-ids-more":
    config["rootfs"]["diff_ids"].append(config["rootfs"]["diff_ids"][0]); save()
elif m == "manifest-big":          # a 5 MiB manifest, correctly hashed
    manifest["annotations"] = {"pad": "x" * (5 << 20)}; save(config_changed=False)
elif m == "config-big":            # a 5 MiB config, correctly hashed
    config["pad"] = "x" * (5 << 20); save()
elif m == "digest-upper":
    d = manifest["layers"][0]["digest"]; manifest["layers"][0]["digest"] = d[:7] + d[7:].upper()
    save(config_changed=False)
elif m == "digest-dotdot":
    manifest["layers"][0]["digest"] = "sha256:../../../../etc/passwd"; save(config_changed=False)
elif m == "digest-short":
    manifest["layers"][0]["digest"] = manifest["layers"][0]["digest"][:-1]; save(config_changed=False)
elif m == "digest-algorithm":
    manifest["layers"][0]["digest"] = "md5:" + "0" * 32; save(config_changed=False)
elif m == "config-digest-upper":
    d = manifest["config"]["digest"]; manifest["config"]["digest"] = d[:7] + d[7:].upper()
    save(config_changed=False)
elif m == "layer-size-small":      # descriptor size smaller than the blob
    manifest["layers"][-1]["size"] -= 1; save(config_changed=False)
elif m == "layer-size-large":      # descriptor size larger than the blob
    manifest["layers"][-1]["size"] += 1; save(config_changed=False)
elif m == "layer-content":         # blob bytes do not match the descriptor digest
    p = os.path.join(blobs, manifest["layers"][-1]["digest"].split(":")[1])
    data = bytearray(open(p, "rb").read()); data[len(data) // 2] ^= 0xff
    open(p, "wb").write(bytes(data))
elif m == "diff-id-wrong":         # right blob digest, wrong diff_id
    config["rootfs"]["diff_ids"][-1] = "sha256:" + "1" * 64; save()
elif m == "layer-media-type":
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+bzip2"
    save(config_changed=False)
elif m == "config-media-type":
    manifest["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    save(config_changed=False)
elif m == "schema1":
    manifest["schemaVersion"] = 1; save(config_changed=False)
elif m == "layer-missing":
    os.unlink(os.path.join(blobs, manifest["layers"][-1]["digest"].split(":")[1]))
elif m == "layer-digest-swap":     # layer 1 named by layer 0's blob (digest and size)
    manifest["layers"][1]["digest"] = manifest["layers"][0]["digest"]
    manifest["layers"][1]["size"] = manifest["layers"][0]["size"]
    save(config_changed=False)
elif m == "nondist":               # every layer an OCI non-distributable one
    for l in manifest["layers"]:
        l["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    save(config_changed=False)
elif m == "foreign":               # Docker's foreign layer type
    manifest["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    save(config_changed=False)
elif m == "index-bad-entry":       # index.json: a second, unrelated entry with an invalid digest
    index["manifests"].append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "digest": "sha256:not-a-digest", "size": 1,
                               "annotations": {"org.opencontainers.image.ref.name": "other"}})
    json.dump(index, open(os.path.join(dst, "index.json"), "w"))
elif m in ("write-through", "symlink-replaced", "through-only", "device-huge"):
    # Two more layers: the first has a symlink "evil" to $SENTINEL (a host
    # directory), the second writes "evil/pwned", with no entry for "evil"
    # itself (write-through) or after a directory entry "evil/" that replaces
    # the symlink (symlink-replaced, a legitimate image). through-only: just
    # the second layer (legitimate: there is no symlink below it).
    import gzip, io, tarfile
    def layer(build):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            build(t)
        tar = raw.getvalue()
        blob = gzip.compress(tar, mtime=0)
        manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "digest": put(blob), "size": len(blob)})
        config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(tar).hexdigest())
    def link(t):
        i = tarfile.TarInfo("evil"); i.type = tarfile.SYMTYPE; i.linkname = os.environ["SENTINEL"]
        t.addfile(i)
    def through(t):
        if m == "symlink-replaced":
            d = tarfile.TarInfo("evil"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
        data = b"pwned\n"
        f = tarfile.TarInfo("evil/pwned"); f.size = len(data); t.addfile(f, io.BytesIO(data))
    def huge_device(t):            # major 2^33: mknod(2) would make 0:1 of it
        i = tarfile.TarInfo("dev/huge"); i.type = tarfile.BLKTYPE; i.mode = 0o666
        i.pax_headers = {"SCHILY.devmajor": str(1 << 33), "SCHILY.devminor": "1"}
        t.addfile(i)
    if m == "device-huge":
        layer(huge_device); save()
        sys.exit(0)
    if m != "through-only": layer(link)
    layer(through); save()
else:
    sys.exit("unknown mutation " + m)
