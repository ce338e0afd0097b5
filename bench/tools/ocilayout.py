#!/usr/bin/env python3
"""Writes an OCI image layout from layer tars (used by bench/images.sh).

  ocilayout.py --out DIR --compression gzip|zstd|none
               --layer NAME=TAR [--layer ...] --tag TAG=NAME,NAME,... [--tag ...]
               [--info FILE]

Each --tag becomes one manifest (with its own config whose diff_ids are the
listed layers, bottom first) named by org.opencontainers.image.ref.name in
index.json. Compressed blobs are made once with `gzip -n` / `zstd -3` next to
the tar (TAR.gz / TAR.zst) and hard-linked into DIR/blobs/sha256. --info
writes a JSON summary of the layers (diff_id, sizes, blob digests).
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
            "none": "application/vnd.oci.image.layer.v1.tar"}
CREATED = "2026-11-28T00:00:00Z"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def compressed(tar, comp):
    if comp == "none":
        return tar
    out = tar + (".gz" if comp == "gzip" else ".zst")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(tar):
        cmd = ["gzip", "-n", "-6", "-c", tar] if comp == "gzip" else \
            ["zstd", "-q", "-3", "-T2", "-c", tar]
        with open(out + ".tmp", "wb") as f:
            subprocess.run(cmd, stdout=f, check=True)
        os.rename(out + ".tmp", out)
    return out


class Layout:
    def __init__(self, out):
        self.out = out
        self.blobs = os.path.join(out, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(out, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def add_file(self, path):
        digest = sha256_file(path)
        dst = os.path.join(self.blobs, digest.split(":")[1])
        if not os.path.exists(dst):
            os.link(path, dst)
        return digest, os.path.getsize(path)

    def add_json(self, obj):
        data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, digest.split(":")[1]), "wb") as f:
            f.write(data)
        return digest, len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--compression", choices=list(MT_LAYER), required=True)
    ap.add_argument("--layer", action="append", default=[])
    ap.add_argument("--tag", action="append", default=[])
    ap.add_argument("--info")
    a = ap.parse_args()

    lay = Layout(a.out)
    layers = {}
    for spec in a.layer:
        name, tar = spec.split("=", 1)
        blob = compressed(tar, a.compression)
        digest, size = lay.add_file(blob)
        diff_id = digest if blob == tar else sha256_file(tar)
        layers[name] = {"name": name, "diff_id": diff_id, "tar_size": os.path.getsize(tar),
                        "digest": digest, "size": size, "blob": "blobs/sha256/" + digest[7:]}

    manifests = []
    for spec in a.tag:
        tag, names = spec.split("=", 1)
        ls = [layers[n] for n in names.split(",")]
        config = {
            "created": CREATED, "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/bin/bash"]},
            "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in ls]},
            "history": [{"created": CREATED, "created_by": f"layerfs bench layer {l['name']}"}
                        for l in ls],
        }
        cdig, csize = lay.add_json(config)
        manifest = {
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": cdig, "size": csize},
            "layers": [{"mediaType": MT_LAYER[a.compression], "digest": l["digest"],
                        "size": l["size"]} for l in ls],
        }
        mdig, msize = lay.add_json(manifest)
        manifests.append({"mediaType": MT_MANIFEST, "digest": mdig, "size": msize,
                          "annotations": {"org.opencontainers.image.ref.name": tag},
                          "platform": {"architecture": "amd64", "os": "linux"}})
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}, f, indent=1)
    if a.info:
        with open(a.info, "w") as f:
            json.dump({"compression": a.compression, "layers": list(layers.values())}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
