#!/usr/bin/env python3
"""Pushes one image of an OCI layout to a registry through the distribution
API as is (skopeo would recompress uncompressed layers), or a hand-made
manifest for the hostile cases.

usage: push.py LAYOUT TAG http://127.0.0.1:PORT REPO:TAG [--content-type TYPE]
  Uploads every blob the tag's manifest (or index) references, then the
  manifest(s); --content-type overrides the Content-Type of the top manifest PUT.
"""
import hashlib, json, os, sys, urllib.request

layout, tag, base, dest = sys.argv[1:5]
override = sys.argv[sys.argv.index("--content-type") + 1] if "--content-type" in sys.argv else None
repo, dest_tag = dest.rsplit(":", 1)


def blob(digest):
    return open(os.path.join(layout, "blobs", *digest.split(":")), "rb").read()


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req)


def put_blob(digest):
    data = blob(digest)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    r = request("POST", "%s/v2/%s/blobs/uploads/" % (base, repo), b"")
    assert r.status == 202, r.status
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    loc += ("&" if "?" in loc else "?") + "digest=" + digest
    r = request("PUT", loc, data, {"Content-Type": "application/octet-stream",
                                   "Content-Length": str(len(data))})
    assert r.status == 201, r.status


def put_manifest(desc, ref, content_type=None):
    data = blob(desc["digest"])
    doc = json.loads(data)
    for child in doc.get("manifests", []):
        put_manifest(child, child["digest"])
    if "config" in doc:
        put_blob(doc["config"]["digest"])
    for layer in doc.get("layers", []):
        put_blob(layer["digest"])
    r = request("PUT", "%s/v2/%s/manifests/%s" % (base, repo, ref), data,
                {"Content-Type": content_type or desc["mediaType"]})
    assert r.status == 201, r.status


index = json.load(open(os.path.join(layout, "index.json")))
for d in index["manifests"]:
    if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
        put_manifest(d, dest_tag, override)
        print(d["digest"])
        break
else:
    sys.exit("push.py: no tag %s in %s" % (tag, layout))
