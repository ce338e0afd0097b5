#!/usr/bin/env bash
# Overlay benchmark (issue 5): layerfs, fuse-overlayfs, the kernel's overlayfs
# and the plain directory, each over the same five lower layers of the Debian
# image (bench/images.sh; the layers come from a layerctl store when
# `layerctl pull` works, else from bench/cache/layers). Every repetition runs
# each job group once per engine, the engine order rotating; each group gets a
# fresh mount and a fresh upper dir. Prints one table of medians with ratios to
# the kernel, writes it to bench/RESULTS.md under "## overlay" and draws
# bench/overlay.svg.
#
#   bench/overlay.sh [--quick] [--runs N] [--engines layerfs,fuse-overlayfs,kernel,plain]
#                    [--groups read,cow,write,meta,metafresh,tree,pagecache]
#                    [--layers store|export]
#                    [--no-results] [--results]
#
# --quick: small sizes and 1 run, for iterating (written to RESULTS.md only
# with --results).
# LAYERFS=/path/to/layerfs or BUILD=/path/to/build use an existing build;
# LAYERFS_OPTS: extra layerfs -o options (default uring=1; empty: /dev/fuse).
set -euo pipefail
source "$(dirname "$0")/common.sh"
need_root

quick=0 runs= engines=layerfs,fuse-overlayfs,kernel,plain write_results=1 layer_src=
groups=read,cow,write,meta,metafresh,tree,pagecache
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --runs) runs=$2; shift ;;
    --engines) engines=$2; shift ;;
    --groups) groups=$2; shift ;;
    --layers) layer_src=$2; shift ;;
    --no-results) write_results=0 ;;
    --results) write_results=2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "overlay.sh: unknown argument '$1'" ;;
  esac
  shift
done
if [ $quick -eq 1 ]; then
  runs=${runs:-1}
  [ $write_results -eq 2 ] || write_results=0
  read_size=256M runtime=2 seqw_size=256M fsync_size=1M meta_n=2000 pc_mib=30
else
  runs=${runs:-3}
  read_size=1G runtime=5 seqw_size=1G fsync_size=4M meta_n=10000 pc_mib=100
fi
meta_size=1024 pc_mounts=10

bench_install_deps
bash "$bench_dir/images.sh"
mkdir -p "$out_dir/logs"
ovl=$out_dir/ovl
benchtool=$out_dir/benchtool
cc -O2 -Wall -o "$benchtool" "$bench_dir/tools/benchtool.c"

# ---- binaries
layerfs_bin=${LAYERFS:-} layerctl=
if bench_build; then
  [ -n "$layerfs_bin" ] || layerfs_bin=$BUILD/fuse/layerfs
  [ -x "$BUILD/tools/layerctl" ] && layerctl=$BUILD/tools/layerctl
fi
engine_list=()
IFS=, read -r -a want <<<"$engines"
for e in "${want[@]}"; do
  case $e in
    layerfs) if [ -x "$layerfs_bin" ]; then engine_list+=(layerfs)
             else log "no layerfs daemon (${layerfs_bin:-not built}): running without it"; fi ;;
    fuse-overlayfs|kernel|plain) engine_list+=("$e") ;;
    *) die "unknown engine '$e'" ;;
  esac
done

# ---- the lower layers, top first
image_json=$cache_dir/images/debian-zstd.json
mapfile -t diff_ids < <(python3 -c 'import json,sys; [print(l["diff_id"][7:]) for l in json.load(open(sys.argv[1]))["layers"]]' "$image_json")
lowers=()
if [ "${layer_src:-store}" = store ] && [ -n "$layerctl" ]; then
  store=$out_dir/store
  rm -rf "$store"
  if "$layerctl" --root "$store" pull "oci:$cache_dir/images/debian-zstd:big" >"$out_dir/logs/pull.log" 2>&1; then
    for ((i = ${#diff_ids[@]} - 1; i >= 0; i--)); do
      d=$store/layers/sha256/${diff_ids[$i]}/diff
      [ -d "$d" ] || die "layerctl pulled the image but $d is missing"
      lowers+=("$d")
    done
    layer_src=store
  else
    [ "$layer_src" = store ] && die "layerctl pull failed: $(tail -n1 "$out_dir/logs/pull.log")"
    log "layerctl pull does not work yet ($(tail -n1 "$out_dir/logs/pull.log")): using bench/cache/layers"
  fi
fi
if [ ${#lowers[@]} -eq 0 ]; then
  [ "${layer_src:-export}" != store ] || die "--layers store needs a working layerctl"
  for i in 4 3 2 1 0; do lowers+=("$cache_dir/layers/L$i"); done
  layer_src=export
fi
lowerdir=$(IFS=:; echo "${lowers[*]}")
log "lower layers ($layer_src): ${#lowers[@]}"

# ---- cleanup of anything left mounted under $ovl
cleanup() {
  local m
  for m in $(awk -v p="$ovl/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}
# layerfs runs with FUSE over io_uring (LAYERFS_OPTS= for /dev/fuse): the
# kernel's fuse.enable_uring is turned on for the run and restored after.
layerfs_opts=${LAYERFS_OPTS-uring=1}
uring_param=/sys/module/fuse/parameters/enable_uring uring_old=
if [[ ",$layerfs_opts," == *,uring=1,* ]] && [ -w "$uring_param" ]; then
  uring_old=$(cat "$uring_param")
  echo Y >"$uring_param"
fi
restore_uring() { [ -z "$uring_old" ] || echo "$uring_old" >"$uring_param"; }
trap 'cleanup; restore_uring' EXIT
cleanup
rm -rf "$ovl"
mkdir -p "$ovl"

# ---- the plain engine: the merged tree copied once into one directory
plain=$cache_dir/plain
if [ ! -f "$cache_dir/plain.complete" ]; then
  log "copying the merged tree to $plain"
  rm -rf "$plain" "$cache_dir/plain.complete"
  mkdir -p "$ovl/m" "$ovl/u" "$ovl/w"
  mount -t overlay overlay -o "lowerdir=$lowerdir,upperdir=$ovl/u,workdir=$ovl/w" "$ovl/m"
  cp -a "$ovl/m" "$plain"
  umount "$ovl/m"
  rm -rf "$ovl"/*
  touch "$cache_dir/plain.complete"
fi
big_rel=data/big.bin
big_lower=${lowers[0]}/$big_rel
[ -f "$big_lower" ] || die "$big_lower missing"
big_size=$(stat -c %s "$big_lower")
restore_plain() {  # undo what the write jobs did to the plain tree
  if ! cmp -s -n 4096 "$plain/$big_rel" "$big_lower" || [ "$(stat -c %s "$plain/$big_rel")" != "$big_size" ]; then
    cp "$big_lower" "$plain/$big_rel"
  fi
  chmod 0644 "$plain/$big_rel"
  rm -rf "$plain/bench-meta" "$plain/newfile" "$plain/fsyncfile"
}

# ---- mounting
# mount_engine ENGINE NAME [noprep]: mounts instance NAME at $ovl/NAME/m with a
# fresh upper ("noprep": prep_instance NAME was called already)
prep_instance() {
  rm -rf "$ovl/$1"
  mkdir -p "$ovl/$1/m" "$ovl/$1/u" "$ovl/$1/w"
}
mount_engine() {
  local e=$1 d=$ovl/$2
  [ "${3:-}" = noprep ] || prep_instance "$2"
  case $e in
    kernel) mount -t overlay overlay -o "lowerdir=$lowerdir,upperdir=$d/u,workdir=$d/w" "$d/m" ;;
    fuse-overlayfs) fuse-overlayfs -o "lowerdir=$lowerdir,upperdir=$d/u,workdir=$d/w" "$d/m" \
                      >>"$out_dir/logs/fuse-overlayfs.log" 2>&1 ;;
    layerfs) "$layerfs_bin" -o "lowerdir=$lowerdir,upperdir=$d/u,workdir=$d/w${layerfs_opts:+,$layerfs_opts}" "$d/m" \
               >>"$out_dir/logs/layerfs.log" 2>&1 ;;
    plain) mount --bind "$plain" "$d/m" ;;
  esac
}
find_daemon() {  # MNT -> pid of the FUSE daemon serving it
  python3 - "$1" <<'EOF'
import os, sys
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            args = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if sys.argv[1].encode() in args and int(p) != os.getpid():
            print(p)
            break
EOF
}
stop_engine() {  # NAME: unmounts, waits for the daemon to exit
  local d=$ovl/$1 pid k
  pid=$(find_daemon "$d/m")
  umount "$d/m" || { log "umount $d/m failed"; umount -l "$d/m" || true; }
  if [ -n "$pid" ]; then
    for ((k = 0; k < 600; k++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
umount_engine() {  # NAME: stop_engine, then removes the instance
  stop_engine "$1"
  rm -rf "${ovl:?}/$1"
}

raw=$out_dir/overlay-raw.tsv
printf 'run\tmetric\tengine\tvalue\tparams\n' >"$raw"
rec() {  # METRIC VALUE PARAMS
  printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$1" "$engine" "$2" "$3" >>"$raw"
  log "  $engine $1 = $2"
}
fio_run() {  # JOBFILE FIGURE [FIO ARGS], env passed by the caller -> prints the figure
  local o=$out_dir/fio.json job=$1 fig=$2
  shift 2
  fio --output-format=json --output="$o" "$@" "$bench_dir/fio/$job.fio" >/dev/null 2>>"$out_dir/logs/fio.log" || return 1
  python3 "$bench_dir/tools/fioresult.py" "$o" "$fig"
}
us_to() {  # divide by 1000 (us -> ms, or us -> s with 1e6)
  python3 -c "print(f'{$1 / $2:.4f}')"
}

# ---- job groups: each runs one engine ($engine) once
group_read() {
  local m=$ovl/r/m v
  mount_engine "$engine" r || return 1
  drop_caches
  v=$(FILE=$m/$big_rel SIZE=$read_size INVALIDATE=1 fio_run seqread read_mibs --readonly) || return 1
  rec seqread_cold "$v" "$read_size"
  v=$(FILE=$m/$big_rel SIZE=$read_size INVALIDATE=0 fio_run seqread read_mibs --readonly) || return 1
  rec seqread_warm "$v" "$read_size"
  v=$(FILE=$m/$big_rel SIZE=$read_size RUNTIME=$runtime INVALIDATE=0 fio_run randread read_iops --readonly) || return 1
  rec randread_warm "$v" "${runtime} s over $read_size"
  drop_caches
  v=$(FILE=$m/$big_rel SIZE=$read_size RUNTIME=$runtime INVALIDATE=1 fio_run randread read_iops --readonly) || return 1
  rec randread_cold "$v" "${runtime} s over $read_size"
  [ ! -e "$ovl/r/u/$big_rel" ] || log "WARNING: $engine copied $big_rel up on read"
  umount_engine r
}

# Milliseconds until the upper copy of FILE is complete: layerfs copies a
# lower file's data up in the background after the first write, and removes
# its partial marker (an xattr on the upper file) once the copy is durable.
# The other engines copy before the first write returns: 0.
copy_up_wait() {
  python3 - "$1" <<'PY'
import os, sys, time
path, t0 = sys.argv[1], time.monotonic()
while any(x.endswith("layerfs.partial") for x in os.listxattr(path)):
    if time.monotonic() - t0 > 300:
        sys.exit(f"{path}: copy-up not complete after 300 s")
    time.sleep(0.005)
print(f"{(time.monotonic() - t0) * 1000:.3f}")
PY
}

randwrite_job() {  # KEY: fio random writes into the 1 GiB file
  local out=$out_dir/fio-rw.json
  FILE=$ovl/c/m/$big_rel SIZE=$big_size RUNTIME=$runtime \
    fio --output-format=json --output="$out" "$bench_dir/fio/randwrite.fio" >/dev/null 2>>"$out_dir/logs/fio.log" || return 1
  rec "${1}_iops" "$(python3 "$bench_dir/tools/fioresult.py" "$out" write_iops)" "${runtime} s"
  rec "${1}_p99" "$(python3 "$bench_dir/tools/fioresult.py" "$out" write_p99_us)" "${runtime} s"
}

# Modes: write, trunc, append, chmod time the first change of the lower file
# (write: then fio random writes right after it); done: the first write
# again, then the wait until the copy-up is complete, then fio.
group_cow() {
  local mode m=$ovl/c/m out us wait_ms
  for mode in write done trunc append chmod; do
    mount_engine "$engine" c || return 1
    cat "$big_lower" >/dev/null  # the lower file is in the page cache
    sync
    out=$("$benchtool" cow "${mode/done/write}" "$m/$big_rel") || return 1
    us=${out#first_us=}; us=${us%% *}
    case $mode in
      write)
        rec cow_write "$(us_to "$us" 1000)" "1 GiB file"
        randwrite_job randwrite || return 1 ;;
      done)
        wait_ms=0  # plain: no upper
        [ "$engine" = plain ] || wait_ms=$(copy_up_wait "$ovl/c/u/$big_rel") || return 1
        rec cow_done "$(python3 -c "print(f'{$us / 1000 + $wait_ms:.4f}')")" "1 GiB file"
        randwrite_job randwrite_done || return 1 ;;
      *) rec "cow_$mode" "$(us_to "$us" 1000)" "1 GiB file" ;;
    esac
    sync
    umount_engine c
    [ "$engine" != plain ] || restore_plain
  done
}

group_write() {
  local m=$ovl/w/m v
  mount_engine "$engine" w || return 1
  v=$(FILE=$m/newfile SIZE=$seqw_size fio_run seqwrite write_mibs) || return 1
  rec seqwrite "$v" "$seqw_size, buffered"
  sync
  v=$(FILE=$m/fsyncfile SIZE=$fsync_size fio_run fsync write_op_us) || return 1
  rec fsync "$v" "$fsync_size"
  rm -f "$m/newfile" "$m/fsyncfile"
  sync
  umount_engine w
}

run_meta() {  # DIR METRIC-PREFIX: benchtool meta in DIR/bench-meta, recorded
  local out k v
  out=$("$benchtool" meta "$1/bench-meta" "$meta_n" "$meta_size") || return 1
  for k in create stat read delete; do
    v=$(tr ' ' '\n' <<<"$out" | sed -n "s/^$k=//p")
    rec "$2_$k" "$v" "$meta_n files of $meta_size B"
  done
  sync
}

group_meta() {
  mount_engine "$engine" t || return 1
  run_meta "$ovl/t/m" meta || return 1
  umount_engine t
}

# The same on an upper (and work) dir of a freshly made ext4 (mkfs defaults,
# with a journal), as on most hosts: this machine's root ext4 has no journal,
# and there ext4 looks past every inode freed in the last minutes before it
# reuses one (recently_deleted()), which makes every engine's creates slow
# after the previous runs' deletes. plain: the fresh filesystem itself.
group_metafresh() {
  local d=$ovl/t img=$out_dir/meta-ext4.img rc=0
  rm -rf "$d" "$img"
  mkdir -p "$d"
  truncate -s 2G "$img"
  mkfs.ext4 -q -F "$img" >/dev/null || return 1
  mount -o loop "$img" "$d" || return 1
  mkdir -p "$d/m" "$d/u" "$d/w"
  if [ "$engine" = plain ]; then
    run_meta "$d/u" metafs || rc=1
  else
    mount_engine "$engine" t noprep || rc=1
    [ $rc -ne 0 ] || run_meta "$d/m" metafs || rc=1
    stop_engine t
  fi
  umount "$d" || umount -l "$d"
  rm -rf "$d" "$img"
  return $rc
}

group_tree() {
  local m=$ovl/f/m t0 t1 pid
  # The binaries are in the page cache (the previous engine's cold find
  # dropped it): this measures the engine, not the disk.
  ls / >/dev/null
  case $engine in
    layerfs) "$layerfs_bin" --version ;;
    fuse-overlayfs) fuse-overlayfs --version ;;
    *) mount --version ;;
  esac >/dev/null 2>&1 || true
  prep_instance f
  t0=$(now_us)
  mount_engine "$engine" f noprep || return 1
  ls "$m" >/dev/null || return 1
  t1=$(now_us)
  rec mount_ls "$(us_to $((t1 - t0)) 1000)" ""
  drop_caches
  t0=$(now_us); find "$m" >/dev/null || return 1; t1=$(now_us)
  rec find_cold "$(us_to $((t1 - t0)) 1000000)" ""
  t0=$(now_us); find "$m" >/dev/null || return 1; t1=$(now_us)
  rec find_warm "$(us_to $((t1 - t0)) 1000000)" ""
  drop_caches
  t0=$(now_us); ls -R "$m/usr/lib" >/dev/null || return 1; t1=$(now_us)
  rec lsr_cold "$(us_to $((t1 - t0)) 1000000)" ""
  t0=$(now_us); ls -R "$m/usr/lib" >/dev/null || return 1; t1=$(now_us)
  rec lsr_warm "$(us_to $((t1 - t0)) 1000000)" ""
  pid=$(find_daemon "$m")
  if [ -n "$pid" ]; then
    rec rss "$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")" ""
  fi
  umount_engine f
}

pc_list=$out_dir/pagecache-files
python3 - "$plain" "$pc_mib" >"$pc_list" <<'EOF'
# The biggest shared libraries under /usr/lib until pc_mib MiB.
import os, sys
root, want = sys.argv[1], int(sys.argv[2]) << 20
files = []
for d, _, names in os.walk(os.path.join(root, "usr/lib")):
    for n in names:
        p = os.path.join(d, n)
        if ".so" in n and os.path.isfile(p) and not os.path.islink(p):
            files.append((os.path.getsize(p), os.path.relpath(p, root)))
total = 0
for size, rel in sorted(files, reverse=True):
    if total >= want:
        break
    print(rel)
    total += size
EOF
pc_bytes=$(cd "$plain" && tr '\n' '\0' <"$pc_list" | du -cb --files0-from=- | tail -n1 | cut -f1)

# Page cache charged to this job's memory cgroup (the FUSE daemons started
# here are in it too), so other jobs on the machine do not count; falls back
# to the system-wide Cached of /proc/meminfo.
cg_stat=
cg=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
if [ -n "$cg" ] && [ -r "/sys/fs/cgroup/memory$cg/memory.stat" ]; then
  cg_stat=/sys/fs/cgroup/memory$cg/memory.stat  # cgroup v1
elif cg=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup) && [ -r "/sys/fs/cgroup$cg/memory.stat" ] &&
     grep -q '^file ' "/sys/fs/cgroup$cg/memory.stat"; then
  cg_stat=/sys/fs/cgroup$cg/memory.stat  # cgroup v2
fi
page_cache_kib() {
  if [ -n "$cg_stat" ]; then
    awk '$1 == "cache" || $1 == "file" {print int($2 / 1024); exit}' "$cg_stat"
  else
    awk '/^Cached:/ {print $2}' /proc/meminfo
  fi
}
evict_pc_files() {  # drops the libraries' pages from the lower layers and the plain tree
  python3 - "$pc_list" "$plain" "${lowers[@]}" <<'PY'
import os, sys
rels = open(sys.argv[1]).read().split()
for root in sys.argv[2:]:
    for rel in rels:
        try:
            fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
}

group_pagecache() {
  local i c c0 c1 prev attempt ok=0
  # Something else dropping caches (another job on the machine) shows up as
  # a shrinking page cache: then the attempt is repeated with fresh mounts.
  for ((attempt = 0; attempt < 4 && ok == 0; attempt++)); do
    for ((i = 0; i < pc_mounts; i++)); do mount_engine "$engine" "p$i" || return 1; done
    sync
    evict_pc_files
    c0=$(page_cache_kib) prev=$c0 ok=1
    for ((i = 0; i < pc_mounts; i++)); do
      (cd "$ovl/p$i/m" && tr '\n' '\0' <"$pc_list" | xargs -0 cat >/dev/null) || return 1
      c=$(page_cache_kib)
      [ "$c" -ge $((prev - 1024)) ] || ok=0
      [ $i -eq 0 ] && c1=$c
      prev=$c
    done
    for ((i = 0; i < pc_mounts; i++)); do umount_engine "p$i"; done
    [ $ok -eq 1 ] || log "  page cache shrank during the measurement (caches dropped elsewhere?): again"
  done
  [ $ok -eq 1 ] || return 1
  local p="$(wc -l <"$pc_list") libraries, $((pc_bytes >> 20)) MiB"
  rec pc_first "$(python3 -c "print(f'{($c1 - $c0) / 1024:.1f}')")" "$p"
  rec pc_extra "$(python3 -c "print(f'{($c - $c1) / 1024 / ($pc_mounts - 1):.1f}')")" "$p"
}

# ---- run
IFS=, read -r -a group_list <<<"$groups"
n=${#engine_list[@]}
log "engines: ${engine_list[*]}; groups: ${group_list[*]}; runs: $runs$([ $quick -eq 1 ] && echo ' (quick)')"
for ((run = 0; run < runs; run++)); do
  for g in "${group_list[@]}"; do
    for ((k = 0; k < n; k++)); do
      engine=${engine_list[$(((k + run) % n))]}
      log "run $run: $g on $engine"
      if ! "group_$g"; then
        log "FAILED: $g on $engine (run $run); see $out_dir/logs"
        cleanup
        rm -rf "${ovl:?}"/*
      fi
      [ "$engine" != plain ] || restore_plain
    done
  done
done

commit=$(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo '?')
fovl=$(fuse-overlayfs --version 2>/dev/null | grep -i 'fuse-overlayfs' | sed -n 1p || true)
notes="Engines: ${engine_list[*]}; layerfs options: ${layerfs_opts:-none}$([ -n "$uring_old" ] && echo " (kernel fuse.enable_uring=Y for the run)"); lower layers from $([ "$layer_src" = store ] && echo 'a layerctl store' || echo 'bench/cache/layers (GNU tar)'), 5 layers; ${fovl:-fuse-overlayfs}; kernel $(uname -r) overlayfs with default options (metacopy=$(cat /sys/module/overlay/parameters/metacopy 2>/dev/null || echo '?')); $(nproc) cores shared with other builds (noisy)."
[ $quick -eq 0 ] || notes+=" Quick mode: reads of ${read_size} of the 1 GiB file, ${runtime} s random I/O, ${seqw_size} new file, ${meta_n} small files, ${pc_mib} MiB of libraries."
args=(overlay "$raw" --runs "$runs" --notes "$notes" --commit "$commit")
if [ $write_results -ge 1 ]; then
  args+=(--results "$bench_dir/RESULTS.md" --chart "$bench_dir/overlay.svg")
else
  args+=(--chart "$out_dir/overlay.svg")
fi
python3 "$bench_dir/tools/report.py" "${args[@]}"
