#!/usr/bin/env bash
# Builds the three lower layers the differential tests run on, in the kernel
# overlayfs format: DEST/l1 (bottom), DEST/l2, DEST/l3 (top). Whiteouts are
# char 0:0 devices, opaque dirs carry trusted.overlay.opaque=y; the layers hold
# every file type, hard links, symlinks, devices, fifos, sockets, xattrs, ACLs,
# sparse files, setuid bits and odd owners. Every timestamp is fixed.
set -euo pipefail
dest=$1
mkdir -p "$dest"/l1 "$dest"/l2 "$dest"/l3

# --- l1: the base
cd "$dest/l1"
mkdir -p etc bin data hl links dev xattr acl d1/sub/deep d2 d3/inner empty opq wh ren/dir1/sub \
  ren/dir2 ren/hl rep priv mixed/a/b
printf 'root:x:0:0:root:/root:/bin/sh\n' > etc/passwd
printf 'base\n' > etc/hostname
printf '#!/bin/sh\necho hi\n' > bin/sh && chmod 0755 bin/sh
printf 'setuid binary\n' > bin/su && chmod 4755 bin/su
printf 'setgid binary\n' > bin/wall && chown 0:5 bin/wall && chmod 2755 bin/wall
printf 'user tool\n' > bin/tool && chown 1000:1000 bin/tool && chmod 0750 bin/tool
printf 'small\n' > data/small.txt
: > data/empty
truncate -s 8M data/sparse
printf 'middle' | dd of=data/sparse bs=1 seek=$((3*1024*1024)) conv=notrunc status=none
printf 'end' | dd of=data/sparse bs=1 seek=$((8*1024*1024-3)) conv=notrunc status=none
head -c 300000 /dev/zero | tr '\0' 'q' > data/big
printf 'shared\n' > hl/a && ln hl/a hl/b && ln hl/a d2/a-link
printf 'single\n' > hl/c
ln -s ../etc/passwd links/rel
ln -s /etc/passwd links/abs
ln -s nowhere links/dangling
ln -s ../../../../../etc links/escape
ln -s d1 links/dirlink 2>/dev/null || true
ln -s ../d1 links/dirlink2
mknod dev/null c 1 3 && chmod 0666 dev/null
mknod dev/loop0 b 7 0
mkfifo dev/fifo
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' dev/sock
printf 'x\n' > xattr/file
setfattr -n user.color -v blue xattr/file
setfattr -n user.empty xattr/file
setfattr -n trusted.secret -v hidden xattr/file
setfattr -n user.dirattr -v 1 xattr
ln -s file xattr/link
printf 'acl\n' > acl/file
setfacl -m u:1000:rw,g:1000:r acl/file
setfacl -d -m u:1000:rwx acl
printf 'deep\n' > d1/sub/deep/file
printf 'x1\n' > d1/x
printf 'y1\n' > d1/y
printf 'd2f\n' > d2/f
printf 'd3\n' > d3/inner/old
printf 'a\n' > opq/a
printf 'b\n' > opq/b
printf 'gone\n' > wh/gone
printf 'keep\n' > wh/keep
mkdir wh/gonedir && printf 'g\n' > wh/gonedir/f
printf 'f1\n' > ren/dir1/f1
printf 'f2\n' > ren/dir1/sub/f2
printf 'r\n' > ren/file1
printf 'r2\n' > ren/file2
printf 'l\n' > ren/hl/one && ln ren/hl/one ren/hl/two && ln ren/hl/one ren/hl/three
printf 'was a file\n' > rep/thing
printf 'p\n' > priv/secret && chown -R 1000:1000 priv && chmod 0700 priv
printf 'm\n' > mixed/a/b/c
for i in $(seq 1 40); do printf '%s\n' "$i" > "d2/n$i"; done
mkdir -p xw/marked xw/legacy xw/plain
for d in marked legacy plain; do printf 'lower\n' > "xw/$d/f"; done

# --- l2: whiteouts, an opaque dir, replacements
cd "$dest/l2"
mkdir -p wh opq d1 etc d2 rep mixed/a
mknod wh/gone c 0 0
mknod wh/gonedir c 0 0
setfattr -n trusted.overlay.opaque -v y opq
printf 'c\n' > opq/c
printf 'x2\n' > d1/x
printf 'z2\n' > d1/z
printf 'layer2\n' > etc/hostname
mknod d3 c 0 0
rmdir rep && printf 'now a file\n' > rep
printf 'l2\n' > mixed/a/l2
for i in $(seq 41 60); do printf '%s\n' "$i" > "d2/n$i"; done
mknod d2/n7 c 0 0
# xattr whiteouts (empty files with overlay.whiteout): the kernel's readdir
# hides them only in a directory marked overlay.opaque "x" (6.8 on; the 6.7
# marker overlay.whiteouts no longer counts), its lookup everywhere.
mkdir -p xw/marked xw/legacy xw/plain
for d in marked legacy plain; do : > "xw/$d/f"; setfattr -n trusted.overlay.whiteout -v y "xw/$d/f"; done
setfattr -n trusted.overlay.opaque -v x xw/marked
setfattr -n trusted.overlay.whiteouts -v y xw/legacy

# --- l3: top
cd "$dest/l3"
mkdir -p d3 d1/sub/deep mixed
printf 'new d3\n' > d3/new
printf 'file2\n' > d1/sub/deep/file2
printf 'top\n' > mixed/top

for l in l1 l2 l3; do
  find "$dest/$l" -depth -exec touch -h -d @1000000000 {} +
done
