#!/usr/bin/env python3
"""Layer helpers for bench/images.sh.

  layers.py split ROOTFS OUTDIR       write NUL-separated file lists L0..L2.list
                                      (base / usr/lib / python) for GNU tar
  layers.py top ROOTFS DIR            build the small top layer (changed files,
                                      OCI whiteouts `.wh.NAME`, an opaque dir)
  layers.py list DIR OUT              NUL-separated list of everything under DIR
  layers.py big DIR SIZE_MIB          write DIR/data/big.bin (see below)
  layers.py whiteouts DIR             convert OCI whiteouts in an extracted
                                      layer to the overlay format (char 0:0,
                                      trusted.overlay.opaque=y)

The big file: every 4 KiB block starts with 64 non-zero bytes (magic, block
number, 48 pseudo-random bytes from a fixed seed) and is zero after that. It is
fully written (no holes, and no 4 KiB block is all zeros, so no tool turns it
sparse), distinct per block, and compresses ~60x, which keeps the gzip/zstd
blobs small while the unpacked layer really is 1 GiB on disk.
"""
import os
import random
import stat
import struct
import sys

PY_PREFIXES = ("python3", "libpython3", "pydoc3", "pygettext3", "py3")


def layer_of(rel):
    parts = rel.split("/")
    if any(p.startswith(PY_PREFIXES) for p in parts):
        return 2
    if rel.startswith("usr/lib/"):
        return 1
    return 0


def walk(root):
    """Yields paths relative to root (no leading ./), parents before children."""
    stack = [""]
    while stack:
        d = stack.pop()
        full = os.path.join(root, d) if d else root
        names = sorted(os.listdir(full), reverse=True)
        for n in names:
            rel = f"{d}/{n}" if d else n
            st = os.lstat(os.path.join(root, rel))
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel)
        for n in reversed(names):
            yield (f"{d}/{n}" if d else n)


def ancestors(rel):
    parts = rel.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def write_list(path, entries):
    with open(path, "wb") as f:
        for e in sorted(entries):
            f.write(e.encode() + b"\0")


def cmd_split(rootfs, outdir):
    sets = [set(), set(), set()]
    for rel in walk(rootfs):
        k = layer_of(rel)
        sets[k].add(rel)
        sets[k].update(ancestors(rel))
    for k, s in enumerate(sets):
        write_list(os.path.join(outdir, f"L{k}.list"), s)
        print(f"L{k}: {len(s)} entries")


def cmd_list(d, out):
    write_list(out, set(walk(d)))


def mkdirs_like(rootfs, top, rel):
    """Creates top/rel and its parents with the rootfs directories' metadata."""
    cur = ""
    for part in rel.split("/"):
        cur = f"{cur}/{part}" if cur else part
        dst = os.path.join(top, cur)
        if os.path.isdir(dst):
            continue
        src = os.path.join(rootfs, cur)
        st = os.lstat(src) if os.path.lexists(src) else None
        os.mkdir(dst)
        if st is not None and stat.S_ISDIR(st.st_mode):
            os.chown(dst, st.st_uid, st.st_gid)
            os.chmod(dst, stat.S_IMODE(st.st_mode))


def put_file(rootfs, top, rel, data, mode=0o644):
    mkdirs_like(rootfs, top, os.path.dirname(rel))
    p = os.path.join(top, rel)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)


def cmd_top(rootfs, top):
    os.makedirs(top)
    put_file(rootfs, top, "etc/motd", b"layerfs benchmark image (top layer)\n")
    put_file(rootfs, top, "etc/bench-release", b"ID=layerfs-bench\nVERSION=1\n")
    # replaces a file of the usr/lib layer
    osr = open(os.path.join(rootfs, "usr/lib/os-release"), "rb").read()
    put_file(rootfs, top, "usr/lib/os-release", osr + b"VARIANT=layerfs-bench\n")
    # whiteouts of a directory and of files from lower layers
    for rel in ("usr/share/doc/.wh.git", "usr/share/doc/.wh.curl", "usr/bin/.wh.lesskey",
                "usr/lib/x86_64-linux-gnu/.wh.libcurl.so.4"):
        assert os.path.lexists(os.path.join(rootfs, os.path.dirname(rel), rel.split("/.wh.")[1])), rel
        put_file(rootfs, top, rel, b"")
    # an opaque directory with new content
    put_file(rootfs, top, "var/cache/debconf/.wh..wh..opq", b"")
    put_file(rootfs, top, "var/cache/debconf/bench.txt", b"opaque dir\n")
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (1700000000, 1700000000), follow_symlinks=False)


def cmd_big(d, size_mib):
    os.makedirs(os.path.join(d, "data"))
    os.chmod(os.path.join(d, "data"), 0o755)
    rng = random.Random(20261128)
    blocks_per_chunk = 256  # 1 MiB
    with open(os.path.join(d, "data", "big.bin"), "wb") as f:
        for c in range(size_mib):
            chunk = bytearray(4096 * blocks_per_chunk)
            for b in range(blocks_per_chunk):
                n = c * blocks_per_chunk + b
                chunk[b * 4096:b * 4096 + 64] = b"LFSBENCH" + struct.pack("<Q", n) + rng.randbytes(48)
            f.write(chunk)
    for p in (os.path.join(d, "data", "big.bin"), os.path.join(d, "data")):
        os.utime(p, (1700000000, 1700000000))


def cmd_whiteouts(d):
    for dirpath, dirnames, filenames in os.walk(d):
        for n in filenames:
            if not n.startswith(".wh."):
                continue
            p = os.path.join(dirpath, n)
            os.unlink(p)
            if n == ".wh..wh..opq":
                os.setxattr(dirpath, "trusted.overlay.opaque", b"y")
            else:
                os.mknod(os.path.join(dirpath, n[4:]), stat.S_IFCHR | 0o000, os.makedev(0, 0))


def main(argv):
    cmds = {"split": (cmd_split, 2), "top": (cmd_top, 2), "list": (cmd_list, 2),
            "big": (lambda d, s: cmd_big(d, int(s)), 2), "whiteouts": (cmd_whiteouts, 1)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        return 2
    cmds[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
