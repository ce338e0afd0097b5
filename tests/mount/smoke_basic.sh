#!/usr/bin/env bash
# Smoke test: the same operations on layerfs and on the kernel's overlayfs over
# identical copies of the same layers must give the same tree and the same
# errors; each upper must then mount with the other implementation and show
# the same tree; the lower layers must not change.
set -euo pipefail
: "${SRCDIR:?}"
source "$(dirname "$0")/lib.sh" smoke
tree="$SRCDIR/tests/mount/smoke_tree.py"

# Two lower layers in the kernel's format, with every kind of marker.
mk_layers() {
  local d=$1
  mkdir -p "$d/l2/etc" "$d/l2/usr/bin" "$d/l2/gone" "$d/l2/opq" "$d/l2/oci" "$d/l2/ociopq/sub"
  echo base >"$d/l2/etc/passwd"
  echo lower2 >"$d/l2/usr/bin/a"
  ln "$d/l2/usr/bin/a" "$d/l2/usr/bin/a-link"
  ln -s ../etc/passwd "$d/l2/usr/pw"
  echo x >"$d/l2/gone/f"
  echo hidden >"$d/l2/opq/h"
  echo keep >"$d/l2/oci/keep"
  echo drop >"$d/l2/oci/drop"
  echo old >"$d/l2/ociopq/old"
  setfattr -n user.color -v blue "$d/l2/etc/passwd"
  mkfifo "$d/l2/fifo"
  mkdir -p "$d/l1/etc" "$d/l1/opq" "$d/l1/oci" "$d/l1/ociopq"
  echo top >"$d/l1/etc/hosts"
  mknod "$d/l1/gone" c 0 0
  setfattr -n trusted.overlay.opaque -v y "$d/l1/opq"
  echo vis >"$d/l1/opq/v"
  : >"$d/l1/oci/.wh.drop"
  : >"$d/l1/ociopq/.wh..wh..opq"
  echo new >"$d/l1/ociopq/new"
  truncate -s 64M "$d/l1/sparse"
  echo tail >>"$d/l1/sparse"
  chmod 4755 "$d/l1/etc/hosts"
  chown 1000:1000 "$d/l1/etc"
  mkdir -p "$d/upper" "$d/work" "$d/mnt"
}

mk_layers "$t/fuse"
mk_layers "$t/kern"
# The kernel does not read OCI ".wh." markers: give its copy the kernel form.
rm "$t/kern/l1/oci/.wh.drop" "$t/kern/l1/ociopq/.wh..wh..opq"
mknod "$t/kern/l1/oci/drop" c 0 0
setfattr -n trusted.overlay.opaque -v y "$t/kern/l1/ociopq"
lower_sum() { (cd "$1" && find l1 l2 -printf '%p %m %s %n\n' | sort; cat $(find l1 l2 -type f | sort) | sha256sum); }
before=$(lower_sum "$t/fuse" | grep -v '\.wh\.')

"$LAYERFS" -o "lowerdir=$t/fuse/l1:$t/fuse/l2,upperdir=$t/fuse/upper,workdir=$t/fuse/work" "$t/fuse/mnt"
mount -t overlay overlay -o "lowerdir=$t/kern/l1:$t/kern/l2,upperdir=$t/kern/upper,workdir=$t/kern/work" "$t/kern/mnt"

# Initial views agree (directory link counts differ on purpose: the kernel
# reports 1 for merged directories, layerfs the real count).
python3 "$tree" "$t/fuse/mnt" --no-nlink-dirs >"$t/fuse.0"
python3 "$tree" "$t/kern/mnt" --no-nlink-dirs >"$t/kern.0"
diff -u "$t/kern.0" "$t/fuse.0"

ops() {
  cd "$1"
  python3 - <<'PY'
import errno, os, shutil
def mv(a, b):
    # What mv(1) does: rename, or copy and remove on EXDEV (the kernel's
    # answer for lower directories).
    try:
        os.rename(a, b)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copytree(a, b, symlinks=True, copy_function=shutil.copy2)
        shutil.rmtree(a)
def t(name, f):
    try:
        f(); r = "ok"
    except OSError as e:
        r = errno.errorcode[e.errno]
    print(f"{name}: {r}")
t("create", lambda: open("newfile", "w").write("new\n"))
t("append lower", lambda: open("etc/passwd", "a").write("more\n"))
t("unlink lower", lambda: os.unlink("etc/hosts"))
t("unlink again", lambda: os.unlink("etc/hosts"))
t("mkdir -p", lambda: os.makedirs("newdir/sub"))
t("mkdir exists", lambda: os.mkdir("etc"))
t("rename file", lambda: os.rename("usr/bin/a", "usr/bin/b"))
t("rename lower dir", lambda: mv("usr", "usr2"))
t("rmdir nonempty", lambda: os.rmdir("opq"))
t("unlink dir", lambda: os.unlink("opq"))
t("rmdir file", lambda: os.rmdir("newfile"))
t("unlink opq/v", lambda: os.unlink("opq/v"))
t("rmdir opq", lambda: os.rmdir("opq"))
t("mkdir over whiteout", lambda: os.mkdir("gone"))
t("chmod lower", lambda: os.chmod("sparse", 0o600))
t("chown lower", lambda: os.chown("usr2/pw", 7, 8, follow_symlinks=False))
t("link", lambda: os.link("newfile", "nf2"))
t("link exists", lambda: os.link("newfile", "nf2"))
t("mkfifo", lambda: os.mkfifo("fifo2"))
t("symlink", lambda: os.symlink("target", "sl"))
def tmpfile(name, flags):
    # open(2) with O_TMPFILE in a lower directory, written, then given a name
    # with linkat(fd, "", AT_EMPTY_PATH) (we are root).
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("etc", os.O_TMPFILE | os.O_RDWR | flags, 0o640)
    try:
        os.write(fd, b"made unnamed\n")
        print("  links before", os.fstat(fd).st_nlink)
        if libc.linkat(fd, b"", -100, name.encode(), 0x1000) != 0:  # AT_FDCWD, AT_EMPTY_PATH
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        print("  read back", open(name).read().strip(), "links", os.fstat(fd).st_nlink)
    finally:
        os.close(fd)
t("O_TMPFILE then linkat", lambda: tmpfile("etc/tmpnamed", 0))
t("O_TMPFILE|O_EXCL then linkat", lambda: tmpfile("etc/never", os.O_EXCL))
t("setxattr", lambda: os.setxattr("etc/passwd", "user.foo", b"bar"))
t("removexattr", lambda: os.removexattr("etc/passwd", "user.color"))
t("removexattr missing", lambda: os.removexattr("etc/passwd", "user.none"))
t("utime", lambda: os.utime("newfile", (1577836800, 1577836800)))
t("open missing", lambda: open("nope/x"))
t("rename noent", lambda: os.rename("nope", "nope2"))
t("rename over dir", lambda: os.rename("newfile", "newdir"))
t("rename dir over file", lambda: os.rename("newdir", "newfile"))
t("truncate lower", lambda: os.truncate("oci/keep", 2))
t("rename into whiteout", lambda: os.rename("oci/keep", "gone2"))
t("exchange-free rename dir over empty", lambda: (os.mkdir("e1"), os.mkdir("e2"), os.rename("e1", "e2")))
t("rmdir merged emptied", lambda: (os.unlink("ociopq/new"), os.rmdir("ociopq")))
fd = os.open("sparse", os.O_RDWR)
t("write sparse", lambda: os.pwrite(fd, b"mid", 1 << 20))
t("seek data", lambda: print("  data at", os.lseek(fd, 0, os.SEEK_DATA)))
t("seek hole", lambda: print("  hole at", os.lseek(fd, 0, os.SEEK_HOLE)))
os.close(fd)
PY
}
(ops "$t/fuse/mnt") >"$t/fuse.ops"
(ops "$t/kern/mnt") >"$t/kern.ops"
diff -u "$t/kern.ops" "$t/fuse.ops"

python3 "$tree" "$t/fuse/mnt" --no-nlink-dirs >"$t/fuse.1"
python3 "$tree" "$t/kern/mnt" --no-nlink-dirs >"$t/kern.1"
# Hard links survive copy-up in layerfs (the kernel's default breaks them):
# usr2/bin/a-link and b stay one file with 2 links; mv copied them in the kernel.
sed -i -E 's#^(usr2/bin/(a-link|b) .* )1( [0-9a-f]{16} .*)$#\12\3#' "$t/kern.1"
diff -u "$t/kern.1" "$t/fuse.1"

# Merged directory link counts are real in layerfs.
[ "$(stat -c %h "$t/fuse/mnt/usr2")" = 3 ]
[ "$(stat -c %i "$t/fuse/mnt/usr2/bin/b")" = "$(stat -c %i "$t/fuse/mnt/usr2/bin/a-link")" ]

umount "$t/fuse/mnt"
umount "$t/kern/mnt"

# The lower layers did not change.
after=$(lower_sum "$t/fuse" | grep -v '\.wh\.')
[ "$before" = "$after" ] || { echo "lower layers changed"; exit 1; }

# Each upper mounts with the other implementation and shows the same tree.
mkdir -p "$t/x/mnt" "$t/x/w1" "$t/x/w2"
mount -t overlay overlay -o "lowerdir=$t/kern/l1:$t/kern/l2,upperdir=$t/fuse/upper,workdir=$t/x/w1" "$t/x/mnt"
python3 "$tree" "$t/x/mnt" --no-nlink-dirs >"$t/cross.kern"
umount "$t/x/mnt"
# usr2 moved by a redirect, so usr2/bin/a-link stayed in the lower layer: the
# kernel without index=on counts only b's own upper link (1); layerfs joins
# the two names through its index (2). Issue 18 item 7 would make them agree.
sed -i -E 's#^(usr2/bin/(a-link|b) .* )[13]( [0-9a-f]{16} .*)$#\12\3#' "$t/cross.kern"
diff -u "$t/fuse.1" "$t/cross.kern"

"$LAYERFS" -o "lowerdir=$t/kern/l1:$t/kern/l2,upperdir=$t/kern/upper,workdir=$t/x/w2" "$t/x/mnt"
python3 "$tree" "$t/x/mnt" --no-nlink-dirs >"$t/cross.fuse"
umount "$t/x/mnt"
sed -i -E 's#^(usr2/bin/(a-link|b) .* )1( [0-9a-f]{16} .*)$#\12\3#' "$t/cross.fuse"
diff -u "$t/kern.1" "$t/cross.fuse"
echo "smoke_basic: ok"
