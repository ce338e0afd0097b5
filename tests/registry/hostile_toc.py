#!/usr/bin/env python3
"""Makes a hostile lazily pullable image out of an eStargz one in a registry:
the first layer's TOC is changed and the manifest pushed under a new tag.

usage: hostile_toc.py http://127.0.0.1:PORT REPO SRC_TAG DEST_TAG MODE
  bad-digest       the toc.digest annotation names other bytes
  path-escape      a regular file's name climbs out with '..'
  offset-past-end  a regular file's content offset lies far past the blob's end
  poison           a consistent TOC that swaps two files' names (a tree unlike
                   the blob's), under the diff_id the config claims
"""
import gzip, hashlib, io, json, sys, tarfile, urllib.request

base, repo, src, dest, mode = sys.argv[1:6]
OCI = "application/vnd.oci.image.manifest.v1+json"
ANN = "containerd.io/snapshot/stargz/toc.digest"


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req)


def put_blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = request("POST", "%s/v2/%s/blobs/uploads/" % (base, repo), b"")
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    loc += ("&" if "?" in loc else "?") + "digest=" + digest
    request("PUT", loc, data, {"Content-Type": "application/octet-stream"})
    return digest


def footer(off):
    return (b"\x1f\x8b\x08\x04\0\0\0\0\0\xff" + b"\x1a\0SG\x16\0" + b"%016x" % off + b"STARGZ" +
            b"\x01\0\0\xff\xff" + b"\0" * 8)


man = json.load(request("GET", "%s/v2/%s/manifests/%s" % (base, repo, src), headers={"Accept": OCI}))
layer = next(l for l in man["layers"] if ANN in l.get("annotations", {}))
if mode == "bad-digest":
    layer["annotations"][ANN] = "sha256:" + hashlib.sha256(b"not the toc").hexdigest()
else:
    blob = request("GET", "%s/v2/%s/blobs/%s" % (base, repo, layer["digest"])).read()
    off = int(blob[-51:][16:32], 16)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob[off:-51]))) as t:
        toc = json.load(t.extractfile("stargz.index.json"))
    reg = next(e for e in toc["entries"] if e["type"] == "reg" and e.get("size", 0) > 0)
    if mode == "poison":
        other = next(e for e in toc["entries"] if e["type"] == "reg" and e.get("size", 0) > 0
                     and e.get("digest") != reg.get("digest"))
        reg["name"], other["name"] = other["name"], reg["name"]
    elif mode == "path-escape":
        reg["name"] = "../../escaped"
    elif mode == "offset-past-end":
        reg["offset"] = len(blob) + (1 << 30)
    else:
        sys.exit("unknown mode " + mode)
    text = json.dumps(toc).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("stargz.index.json")
        info.size = len(text)
        t.addfile(info, io.BytesIO(text))
    new = blob[:off] + gzip.compress(buf.getvalue()) + footer(off)
    layer["digest"] = put_blob(new)
    layer["size"] = len(new)
    layer["annotations"][ANN] = "sha256:" + hashlib.sha256(text).hexdigest()
data = json.dumps(man).encode()
request("PUT", "%s/v2/%s/manifests/%s" % (base, repo, dest), data, {"Content-Type": OCI})
