#!/usr/bin/env bash
# Differential test: runs one scenario (tests/mount/scenarios/NAME.ops) with
# fsops on the kernel's overlayfs and on the engine under test, over identical
# copies of the layers mklayers.sh builds, and fails on any difference in the
# results or in the visible tree. Afterwards: the lowers must be byte for byte
# what they were; the engine's upper, mounted by the kernel, must show the
# engine's tree; the kernel's upper, mounted by the engine, the kernel's tree.
#
# Scenario header lines:
#   #! kernel: OPTS   extra kernel mount options for the comparison
#   #! better: OPTS   the issue asks for better than the kernel's default
#                     here: the engine is compared with the kernel mounted
#                     with OPTS, and the kernel's default must differ (so the
#                     scenario does exercise the difference).
#   #! engine: OPTS   extra options for layerfs (e.g. passthrough=0)
#
# Usage: difftest.sh SCENARIO [--engine layerfs|fuse-overlayfs] [--keep]
# Env: FSOPS, LAYERFS (from meson), DIFF_ENGINE (default layerfs).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
scenario=$1
shift
engine=${DIFF_ENGINE:-layerfs}
keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --engine) engine=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
script=$here/scenarios/$scenario.ops
[ -f "$script" ] || { echo "no scenario $script" >&2; exit 2; }
: "${FSOPS:?}"

if [ "$(id -u)" -ne 0 ]; then echo "SKIP: needs root (kernel overlayfs, trusted xattrs)"; exit 77; fi
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || { echo "SKIP: no overlayfs in this kernel"; exit 77; }

case $engine in
  layerfs)
    engine_bin=${LAYERFS:?}
    if { "$engine_bin" --version 2>&1 || true; } | grep -q 'not built yet'; then
      echo "SKIP: layerfs is still the placeholder binary"; exit 77
    fi ;;
  fuse-overlayfs) engine_bin=$(command -v fuse-overlayfs) ;;
  *) echo "unknown engine $engine" >&2; exit 2 ;;
esac

kopts=$(sed -n 's/^#! kernel: *//p' "$script" | tr -d ' ')
better=$(sed -n 's/^#! better: *//p' "$script" | tr -d ' ')
eopts=$(sed -n 's/^#! engine: *//p' "$script" | tr -d ' ')
[ "$engine" = layerfs ] && [ -n "$eopts" ] && eopts=,$eopts || eopts=
# Extra layerfs options for a whole run (uring.sh: FUSE over io_uring).
[ "$engine" = layerfs ] && [ -n "${DIFF_LAYERFS_OPTS:-}" ] && eopts+=,$DIFF_LAYERFS_OPTS

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-diff.XXXXXX")
mounts=()
cleanup() {
  local m
  for ((i=${#mounts[@]}-1; i>=0; i--)); do
    m=${mounts[i]}
    if mountpoint -q "$m" 2>/dev/null; then
      umount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    fi
  done
  if [ "$keep" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

bash "$here/mklayers.sh" "$T/src"
raw_dump() {  # DIR: every lower layer of DIR, with all xattrs and times
  local l
  for l in l3 l2 l1; do echo "## $l"; "$FSOPS" --raw --root "$1/$l"; done
}
raw_dump "$T/src" > "$T/lowers.before"

join_opts() { local IFS=,; echo "$*"; }

lowers() {  # DIR: lowerdir value, top first
  echo "$1/l3:$1/l2:$1/l1"
}

setup_side() {  # NAME
  mkdir -p "$T/$1"
  cp -a "$T/src/." "$T/$1/"
  mkdir -p "$T/$1/upper" "$T/$1/work" "$T/$1/mnt"
}

mount_kernel() {  # NAME EXTRA-OPTS
  local d=$T/$1 o
  o="lowerdir=$(lowers "$d"),upperdir=$d/upper,workdir=$d/work"
  [ -n "$2" ] && o="$o,$2"
  mount -t overlay overlay -o "$o" "$d/mnt"
  mounts+=("$d/mnt")
}

wait_fuse() {  # MNT: until the FUSE mount answers
  local i
  for i in $(seq 1 100); do
    if [ "$(findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null)" != "" ] &&
       findmnt -n -o FSTYPE --mountpoint "$1" | grep -q fuse && stat "$1" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "engine did not mount $1" >&2
  return 1
}

mount_engine() {  # NAME [ro LOWERS]
  local d=$T/$1
  if [ "${2:-}" = ro ]; then
    "$engine_bin" -o "lowerdir=$3$eopts" "$d/mnt"
  else
    "$engine_bin" -o "lowerdir=$(lowers "$d"),upperdir=$d/upper,workdir=$d/work$eopts" "$d/mnt"
  fi
  mounts+=("$d/mnt")
  wait_fuse "$d/mnt"
}

umount_engine() {  # MNT: unmount and wait until the daemon has let go
  fusermount3 -u "$1" || umount -l "$1"
  local i
  for i in $(seq 1 100); do
    mountpoint -q "$1" || return 0
    sleep 0.05
  done
  echo "engine mount $1 did not go away" >&2
  return 1
}

abort_fuse() {  # MNT: a hung FUSE mount: abort its connection so the test can end
  local dev
  dev=$(findmnt -n -o MAJ:MIN --mountpoint "$1" 2>/dev/null | cut -d: -f2) || return 0
  [ -n "$dev" ] && [ -e "/sys/fs/fuse/connections/$dev/abort" ] &&
    echo 1 > "/sys/fs/fuse/connections/$dev/abort"
  return 0
}

fsops_on() {  # OUT MNT ARGS...: fsops with a time limit; a hang is a failure
  local out=$1 mnt=$2 rc=0
  shift 2
  timeout -k 5 "${FSOPS_TIMEOUT:-120}" "$FSOPS" --root "$mnt" "$@" > "$out" 2> "$out.err" || rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "fsops timed out on $mnt" >> "$out.err"
    abort_fuse "$mnt"
  fi
  [ -s "$out.err" ] && cat "$out.err" >&2
  return $rc
}

tree_of() { sed -n '/^== tree$/,$p' "$1"; }
same_tree() {  # RUN-OUT TREE-OUT LABEL LABEL: RUN-OUT's tree is TREE-OUT, else the diff shows
  diff -u --label "$3" --label "$4" <(tree_of "$1") "$2" > "$2.diff" && return 0
  head -40 "$2.diff"
  return 1
}

fail=0
note() { echo "$*"; }
failure() { echo "FAIL: $*"; fail=1; }

# --- the run proper
setup_side kernel
setup_side engine
kernel_opts=$(join_opts $kopts $better)
mount_kernel kernel "$kernel_opts"
mount_engine engine
fsops_on "$T/kernel.out" "$T/kernel/mnt" --role kernel --script "$script" ||
  failure "fsops failed on the kernel"
fsops_on "$T/engine.out" "$T/engine/mnt" --role engine --script "$script" ||
  failure "fsops failed on $engine"
umount_engine "$T/engine/mnt"
umount "$T/kernel/mnt"

if ! diff -u --label "kernel overlayfs${kernel_opts:+ ($kernel_opts)}" --label "$engine" \
     "$T/kernel.out" "$T/engine.out" > "$T/diff"; then
  cat "$T/diff"
  failure "$engine differs from the kernel's overlayfs"
fi

if [ -n "$better" ]; then
  # The kernel's default must give the weaker behaviour the issue improves on.
  setup_side kdefault
  mount_kernel kdefault "$(join_opts $kopts)"
  fsops_on "$T/kdefault.out" "$T/kdefault/mnt" --role kernel --script "$script" || true
  umount "$T/kdefault/mnt"
  if cmp -s "$T/kdefault.out" "$T/kernel.out"; then
    failure "scenario marked 'better: $better' but the kernel's default behaves the same"
  else
    note "documented divergence: kernel default differs from ($better), $engine matches ($better):"
    diff -u --label "kernel default" --label "kernel ($better)" "$T/kdefault.out" "$T/kernel.out" |
      grep '^[-+][^-+]' | head -8 || true
  fi
fi

# --- no lower byte may change
for side in kernel engine; do
  raw_dump "$T/$side" > "$T/lowers.$side"
  if ! diff -u "$T/lowers.before" "$T/lowers.$side" > "$T/lowers.diff"; then
    head -40 "$T/lowers.diff"
    failure "a lower layer changed under the $side mount"
  fi
done

# --- the engine's upper is kernel-format: the kernel shows the engine's tree.
# One exception, the engine's index: like the kernel with index=on, it keeps
# the names of a hard-linked lower file linked once one of them is copied up,
# and the names not changed since stay below (a lookup never writes the
# upper). The kernel, which does not read that index, shows those names as
# the lower file, not linked to the copy. Where no data changed through a
# link, that is the only difference allowed: same files, other link counts
# and inode identities for the multiply linked ones. With index=on, data
# changed through one name shows in the others, so the check is skipped.
hardlinks_only() {  # ENGINE-TREE KERNEL-TREE: differ only in hard links?
  python3 - "$1" "$2" <<'PY'
import re, sys
def load(path):
    out = {}
    for line in open(path):
        m = re.match(r'^(.*?) ([fdlcbps]) ([0-7]{4}) ', line)
        out[m.group(1) if m else line] = (m.group(2) if m else '', re.sub(r' ino=#\d+', '', line))
    return out
eng, ker = load(sys.argv[1]), load(sys.argv[2])
if list(eng) != list(ker):
    sys.exit(1)
nl = re.compile(r' nlink=(\d+)')
for path, (t, e) in eng.items():
    k = ker[path][1]
    if e == k:
        continue
    multi = t == 'f' and any(int(m) > 1 for m in nl.findall(e) + nl.findall(k))
    if not multi or nl.sub('', e) != nl.sub('', k):
        sys.exit(1)
PY
}
if [[ "$better$kopts" == *index=on* ]]; then
  # layerfs keeps its index in the kernel's format (workdir/index): the
  # kernel with index=on, mounted read-write over the same lowers, upper and
  # workdir, links the names as layerfs did and shows the same tree.
  if [ "$engine" = layerfs ]; then
    mkdir -p "$T/xk/mnt"
    mount -t overlay overlay -o "lowerdir=$(lowers "$T/engine"),upperdir=$T/engine/upper,workdir=$T/engine/work,index=on" \
      "$T/xk/mnt" || failure "the kernel with index=on does not mount $engine's upper"
    mounts+=("$T/xk/mnt")
    fsops_on "$T/xk.out" "$T/xk/mnt" --role kernel ||
      failure "fsops failed on the kernel (index=on) over $engine's upper"
    umount "$T/xk/mnt"
    same_tree "$T/engine.out" "$T/xk.out" "$engine" "kernel (index=on) over $engine's upper" ||
      failure "the kernel's overlayfs with index=on shows $engine's upper differently"
  else
    note "skipped: the kernel over $engine's upper (index=on semantics)"
  fi
else
mkdir -p "$T/xk/mnt"
follow=redirect_dir=follow,metacopy=on  # layerfs writes metacopy files for metadata changes
mount -t overlay overlay -o "lowerdir=$T/engine/upper:$(lowers "$T/engine"),$follow" "$T/xk/mnt"
mounts+=("$T/xk/mnt")
fsops_on "$T/xk.out" "$T/xk/mnt" --role kernel || failure "fsops failed on the kernel over $engine's upper"
umount "$T/xk/mnt"
if ! diff -u --label "$engine" --label "kernel over $engine's upper" <(tree_of "$T/engine.out") \
     "$T/xk.out" > "$T/xk.diff"; then
  if hardlinks_only <(tree_of "$T/engine.out") "$T/xk.out"; then
    note "the kernel over $engine's upper shows hard-linked lower files unlinked (no index):"
    grep '^[-+][^-+]' "$T/xk.diff" | grep -v ' nlink=1 ' | head -6 || true
  else
    head -40 "$T/xk.diff"
    failure "the kernel's overlayfs shows $engine's upper differently"
  fi
fi
fi

# --- and the other way round: the engine shows the kernel's upper (read-only
# mount). Not with index=on: the kernel's upper then relies on its index dir.
if [[ "$better$kopts" == *index=on* ]]; then
  # The kernel's index is layerfs's format too: layerfs, mounted read-write
  # over the kernel's upper and workdir, shows the kernel's tree.
  if [ "$engine" = layerfs ]; then
    mount_engine kernel
    fsops_on "$T/xe.out" "$T/kernel/mnt" --role engine ||
      failure "fsops failed on $engine over the kernel's upper and index"
    umount_engine "$T/kernel/mnt"
    same_tree "$T/kernel.out" "$T/xe.out" kernel "$engine over the kernel's upper and index" ||
      failure "$engine shows the kernel's upper and index differently"
  else
    note "skipped: $engine over the kernel's upper (the kernel used index=on)"
  fi
else
mkdir -p "$T/xe/mnt"
mount_engine xe ro "$T/kernel/upper:$(lowers "$T/kernel")"
fsops_on "$T/xe.out" "$T/xe/mnt" --role engine || failure "fsops failed on $engine over the kernel's upper"
umount_engine "$T/xe/mnt"
same_tree "$T/kernel.out" "$T/xe.out" kernel "$engine over the kernel's upper" ||
  failure "$engine shows the kernel's upper differently"
fi

if [ $fail = 0 ]; then
  echo "PASS: $scenario ($(grep -c ' => ' "$T/kernel.out") operations, $(tree_of "$T/kernel.out" | wc -l) tree lines)"
fi
exit $fail
