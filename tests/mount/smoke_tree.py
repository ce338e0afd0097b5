#!/usr/bin/env python3
"""Prints a merged tree the way a user would compare two of them: one line per
entry with type, mode, owner, size, link count, content digest, symlink
target and xattrs. d_ino == st_ino is checked on the way (exit 1 if not).
Usage: smoke_tree.py DIR [--no-nlink-dirs]"""
import hashlib, os, stat, sys

root = sys.argv[1]
skip_dir_nlink = "--no-nlink-dirs" in sys.argv
bad = 0
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for e in sorted(os.scandir(dirpath), key=lambda e: e.name):
        st = os.lstat(e.path)
        if e.inode() != st.st_ino:
            print(f"D_INO MISMATCH {e.path}: {e.inode()} != {st.st_ino}", file=sys.stderr)
            bad += 1
        rel = os.path.relpath(e.path, root)
        kind = stat.S_IFMT(st.st_mode)
        extra = ""
        if stat.S_ISREG(kind):
            with open(e.path, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()[:16]
        elif stat.S_ISLNK(kind):
            extra = "-> " + os.readlink(e.path)
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            extra = f"dev {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        try:
            xs = sorted(os.listxattr(e.path, follow_symlinks=False))
            xattrs = ",".join(f"{x}={os.getxattr(e.path, x, follow_symlinks=False)!r}" for x in xs)
        except OSError as err:
            xattrs = f"xattr-error {err.errno}"
        nlink = "-" if (skip_dir_nlink and stat.S_ISDIR(kind)) else st.st_nlink
        size = "-" if stat.S_ISDIR(kind) else st.st_size
        print(f"{rel} {oct(st.st_mode)} {st.st_uid}:{st.st_gid} {size} {nlink} {extra} [{xattrs}]")
sys.exit(1 if bad else 0)
