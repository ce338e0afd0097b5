#!/usr/bin/env python3
"""Lists a tree as a user sees it, one line per entry, for comparing two
mounts: path, type, mode, owner, size, mtime (seconds), sha256 of file data,
symlink target, user.* xattrs, and the first path of each hard-link group.
The root itself is left out (no layer carries it).

usage: tree_list.py ROOT"""
import hashlib, os, stat, sys

root = sys.argv[1]
seen = {}
out = []
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(dirnames + filenames):
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        kind = stat.S_IFMT(st.st_mode)
        line = [rel, oct(st.st_mode), "%d:%d" % (st.st_uid, st.st_gid)]
        if stat.S_ISREG(kind):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            line += [str(st.st_size), h.hexdigest()[:16], "mtime=%d" % st.st_mtime]
            if st.st_nlink > 1:
                line.append("link=" + seen.setdefault(st.st_ino, rel))
        elif stat.S_ISLNK(kind):
            line += ["->" + os.readlink(p)]
        elif stat.S_ISDIR(kind):
            line += ["mtime=%d" % st.st_mtime]
        else:
            line += ["rdev=%d" % st.st_rdev]
        try:
            xs = sorted(x for x in os.listxattr(p, follow_symlinks=False) if x.startswith("user."))
            for x in xs:
                line.append("%s=%r" % (x, os.getxattr(p, x, follow_symlinks=False)))
        except OSError:
            pass
        out.append(" ".join(line))
print("\n".join(out))
