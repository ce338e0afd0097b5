# Shared by the runtime tests (sourced, bash): builds a small image around a
# static busybox, the layer trees every test uses.
set -euo pipefail

# busybox_trees DIR: DIR/base (busybox and its applet links, /etc/passwd and
# /etc/group with user app, /data files, /tmp) and DIR/top (a script and files
# the tests change; /data/dir is a directory of the lower layers).
busybox_trees() {
  local t=$1 a
  mkdir -p "$t/base/bin" "$t/base/etc" "$t/base/data/dir/sub" "$t/base/tmp" "$t/base/home/app" \
    "$t/base/root" "$t/base/proc" "$t/base/sys" "$t/base/dev" "$t/top/srv" "$t/top/data"
  cp /bin/busybox "$t/base/bin/busybox"
  for a in sh cat echo ls rm mv id hostname pwd mkdir env grep stat sleep true printf readlink \
    wc sort touch; do
    ln -s busybox "$t/base/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' \
    >"$t/base/etc/passwd"
  printf 'root:x:0:\napp:x:1000:\naudio:x:29:app\nstaff:x:50:\n' >"$t/base/etc/group"
  chown 1000:1000 "$t/base/home/app"
  chmod 1777 "$t/base/tmp"
  echo "lower file" >"$t/base/data/lower.txt"
  echo "doomed" >"$t/base/data/doomed.txt"
  echo "a in dir" >"$t/base/data/dir/a"
  echo "b in sub" >"$t/base/data/dir/sub/b"
  echo "top layer" >"$t/top/data/top.txt"
  cat >"$t/top/srv/run.sh" <<'SH'
echo "greeting=$GREETING cwd=$(pwd) host=$(hostname) uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME"
cat /data/lower.txt /data/top.txt
echo "written in the container" >/data/new.txt
echo "appended" >>/data/lower.txt
rm /data/doomed.txt
mv /data/top.txt /data/renamed.txt
echo done
SH
}
