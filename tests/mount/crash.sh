#!/usr/bin/env bash
# Crash consistency of copy-up: while writers copy up big lower files (and
# small files, metadata-only changes, renames), the layerfs daemon is killed
# with SIGKILL; the dead mount is detached, the same upper and work dirs are
# mounted again, and every file must be either its lower version or its whole
# upper copy (with or without the write that caused it), never a torn copy.
#
# Usage: crash.sh copyup|rename. "rename": the writers rename lower files
# instead, and each must afterwards exist under exactly one of its names.
set -euo pipefail
: "${LAYERFS:?}"
mode=${1:-copyup}
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/var/tmp}/layerfs-crash.XXXXXX")
M=$T/mnt
daemon=
cleanup() {
  [ -n "$daemon" ] && kill -9 "$daemon" 2>/dev/null || true
  if mountpoint -q "$M" 2>/dev/null; then umount -l "$M" || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

NBIG=${CRASH_FILES:-4}
MB=${CRASH_MB:-64}
[ "$mode" = rename ] && MB=${CRASH_MB:-2}   # renames do not copy data
mkdir -p "$T/lower/big" "$T/lower/small" "$M"
for i in $(seq 1 $NBIG); do head -c $((MB * 1024 * 1024)) /dev/urandom > "$T/lower/big/f$i"; done
for i in $(seq 1 50); do printf 'small %s\n' "$i" > "$T/lower/small/s$i"; done
declare -A lower_sum mod_sum
for i in $(seq 1 $NBIG); do
  f=$T/lower/big/f$i
  lower_sum[$i]=$(sha256sum < "$f" | cut -d' ' -f1)
  mod_sum[$i]=$( { printf 'X'; tail -c +2 "$f"; } | sha256sum | cut -d' ' -f1)
done
declare -A small_sum small_new_sum
for i in $(seq 1 50); do
  small_sum[$i]=$(printf 'small %s\n' "$i" | sha256sum | cut -d' ' -f1)
  small_new_sum[$i]=$(printf 'small %s\nnew\n' "$i" | sha256sum | cut -d' ' -f1)
done
# cur[NAME]: sha256 of every file in big/ and small/ of the mount, in one pass
declare -A cur
read_sums() {
  cur=()
  local sum path
  while read -r sum path; do cur[${path#$M/}]=$sum; done < <(cd / && sha256sum "$M"/big/* "$M"/small/*)
}
lower_all=$(cd "$T/lower" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)

start_daemon() {
  "$LAYERFS" -f -o "lowerdir=$T/lower,upperdir=$T/upper,workdir=$T/work" "$M" 2> "$T/daemon.log" &
  daemon=$!
  for _ in $(seq 1 200); do
    [ "$(findmnt -n -o FSTYPE --mountpoint "$M" 2>/dev/null)" = fuse.layerfs ] && return 0
    kill -0 "$daemon" 2>/dev/null || { cat "$T/daemon.log"; fail "layerfs exited"; }
    sleep 0.02
  done
  fail "layerfs did not mount"
}
stop_daemon() {
  fusermount3 -u "$M" 2>/dev/null || umount -l "$M"
  wait "$daemon" 2>/dev/null || true
  daemon=
}

rounds=0 torn=0 upper_copies=0 lower_kept=0 caught=0
for delay in 0 0.003 0.01 0.03 0.1 0.3; do
  rounds=$((rounds + 1))
  rm -rf "$T/upper" "$T/work"
  mkdir -p "$T/upper" "$T/work"
  start_daemon
  pids=()
  if [ "$mode" = copyup ]; then
    for i in $(seq 1 $NBIG); do
      (printf 'X' | dd of="$M/big/f$i" bs=1 count=1 conv=notrunc status=none) 2>/dev/null &
      pids+=($!)
    done
    (for i in $(seq 1 50); do printf 'new\n' >> "$M/small/s$i"; chmod 0600 "$M/small/s$i"; done) 2>/dev/null &
    pids+=($!)
    (for i in $(seq 1 50); do chmod 0640 "$M/small/s$i"; done) 2>/dev/null &
    pids+=($!)
    (touch -d @1000 "$M/big/f1") 2>/dev/null &
    pids+=($!)
  else
    (for i in $(seq 1 50); do mv -T "$M/small/s$i" "$M/small/m$i"; done) 2>/dev/null &
    pids+=($!)
    # racing copy-ups of the same files through the old names
    # (never creating: a name renamed away must not come back)
    (for i in $(seq 1 50); do
      printf 'new\n' | dd of="$M/small/s$i" oflag=append conv=notrunc,nocreat status=none
    done) 2>/dev/null &
    pids+=($!)
    (for i in $(seq 1 $NBIG); do mv -T "$M/big/f$i" "$M/big/g$i"; done) 2>/dev/null &
    pids+=($!)
  fi
  sleep "$delay"
  # files in the work dir: a copy-up was in flight when the daemon died
  [ "$(find "$T/work" -type f 2>/dev/null | wc -l)" -gt 0 ] && caught=$((caught + 1))
  kill -9 "$daemon"
  wait "$daemon" 2>/dev/null || true
  daemon=
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  fusermount3 -u "$M" 2>/dev/null || umount -l "$M"

  # Remount the same upper and work: every file whole.
  start_daemon
  read_sums || fail "round $rounds: cannot read every file after the remount"
  if [ "$mode" = copyup ]; then
    for i in $(seq 1 $NBIG); do
      s=${cur[big/f$i]:-missing}
      if [ "$s" = "${lower_sum[$i]}" ]; then
        if [ -e "$T/upper/big/f$i" ]; then upper_copies=$((upper_copies + 1)); else lower_kept=$((lower_kept + 1)); fi
      elif [ "$s" = "${mod_sum[$i]}" ]; then
        upper_copies=$((upper_copies + 1))
      else
        torn=$((torn + 1))
        echo "round $rounds (kill after ${delay}s): big/f$i is neither its lower version nor its whole copy" \
          "($(stat -c %s "$M/big/f$i") bytes)"
      fi
    done
    for i in $(seq 1 50); do
      s=${cur[small/s$i]:-missing}
      [ "$s" = "${small_sum[$i]}" ] || [ "$s" = "${small_new_sum[$i]}" ] ||
        { torn=$((torn + 1)); echo "round $rounds: small/s$i is '$(cat "$M/small/s$i")'"; }
    done
    [ ${#cur[@]} = $((NBIG + 50)) ] || fail "round $rounds: ${#cur[@]} files: ${!cur[*]}"
  else
    one_name() {  # OLD NEW WANT-SUM [OTHER-SUM]
      local n=0 f
      for f in "$1" "$2"; do
        [ -n "${cur[$f]:-}" ] || continue
        n=$((n + 1))
        [ "${cur[$f]}" = "$3" ] || [ "${cur[$f]}" = "${4:-}" ] || { torn=$((torn + 1)); echo "round $rounds: $f has other data"; }
      done
      if [ $n = 1 ]; then
        [ -n "${cur[$2]:-}" ] && upper_copies=$((upper_copies + 1)) || lower_kept=$((lower_kept + 1))
      else
        torn=$((torn + 1))
        echo "round $rounds (kill after ${delay}s): rename cut short: $1 and $2: $n names"
      fi
    }
    for i in $(seq 1 50); do one_name "small/s$i" "small/m$i" "${small_sum[$i]}" "${small_new_sum[$i]}"; done
    for i in $(seq 1 $NBIG); do one_name "big/f$i" "big/g$i" "${lower_sum[$i]}"; done
    [ ${#cur[@]} = $((NBIG + 50)) ] || fail "round $rounds: ${#cur[@]} files: ${!cur[*]}"
  fi
  # the mount still works: a fresh copy-up after the crash
  printf 'Y' > "$M/after-crash"
  [ "$(cat "$M/after-crash")" = Y ] || fail "round $rounds: write after remount lost"
  stop_daemon
done
[ "$torn" = 0 ] || fail "$torn torn files or renames in $rounds rounds"
now_all=$(cd "$T/lower" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
[ "$now_all" = "$lower_all" ] || fail "a lower file changed"
[ "$mode" = rename ] && what="renamed, not yet renamed" || what="whole upper copies, lower versions"
echo "PASS ($mode): $rounds kills; $what: $upper_copies, $lower_kept; 0 torn;" \
  "a copy-up was in flight at the kill in $caught rounds"
