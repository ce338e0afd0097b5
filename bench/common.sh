# Shared by the bench/ scripts (sourced, not run): paths, dependency install,
# cache dropping and small timing helpers. Needs bash >= 5 (EPOCHREALTIME).

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$bench_dir/.." && pwd)
cache_dir=${BENCH_CACHE:-$bench_dir/cache}
out_dir=${BENCH_OUT:-$bench_dir/out}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root"; }
# debian_layout: sets layout to bench/images.sh's Debian image (an OCI
# layout, tag latest), making the images first if they are not cached.
debian_layout() {
  layout=$cache_dir/images/debian-gzip
  [ -f "$layout/index.json" ] || bash "$bench_dir/images.sh"
}

# store_lowerdir IMAGE: the overlay lowerdir (top layer first) of IMAGE's
# layers in the store $LAYERFS_ROOT, asked of $layerctl.
store_lowerdir() {
  local diff_ids i lower=
  mapfile -t diff_ids < <("$layerctl" inspect --json "$1" |
    python3 -c 'import json,sys; [print(l["diff_id"].split(":")[1]) for l in json.load(sys.stdin)["layers"]]')
  for ((i = ${#diff_ids[@]} - 1; i >= 0; i--)); do
    lower+=${lower:+:}$LAYERFS_ROOT/layers/sha256/${diff_ids[$i]}/diff
  done
  echo "$lower"
}

# need_runs N: dies unless --runs is at least N.
need_runs() { [ "$runs" -ge "$1" ] || die "--runs: at least $1"; }

# need_commands CMD...: dies naming the first one not installed.
need_commands() {
  local p
  for p in "$@"; do command -v "$p" >/dev/null || die "$p is not installed (.ci/install-deps)"; done
}

# bench_args SCRIPT "NAME..." "$@": the options every benchmark takes
# (--runs N, --no-results, --help: the script's header comment) and, for each
# NAME listed, "--NAME VALUE" setting the variable NAME. Sets write_results;
# runs and the NAMEs keep the defaults the script gave them.
bench_args() {
  local script=$1 extra=" $2 " name
  shift 2
  write_results=1
  while [ $# -gt 0 ]; do
    name=${1#--}
    case $1 in
      --runs) runs=$2; shift ;;
      --no-results) write_results=0 ;;
      -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) [[ $1 == --* && $extra == *" $name "* ]] || die "$script: unknown argument '$1'"
         printf -v "$name" '%s' "$2"; shift ;;
    esac
    shift
  done
}

# Installs the Debian packages the benchmarks use (only those missing).
bench_install_deps() {
  local pkgs=(debootstrap fio fuse-overlayfs fuse3 umoci zstd gzip tar python3 gcc libc6-dev
              gnuplot-nox util-linux procps psmisc attr containerd)
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  modprobe fuse 2>/dev/null || true
  modprobe overlay 2>/dev/null || true
}

# Builds layerctl and the layerfs daemon (release build) under bench/out/build
# unless BUILD points at an existing build. Sets BUILD. Returns 1 when the
# project does not build (the benchmarks then run without layerfs/layerctl).
bench_build() {
  if [ -n "${BUILD:-}" ]; then return 0; fi
  BUILD=$out_dir/build
  bash "$repo_dir/.ci/install-deps" >&2 || return 1
  if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" "$repo_dir" --buildtype=debugoptimized -Db_ndebug=true -Dwerror=false -Dtests=false \
      >"$out_dir/meson-setup.log" 2>&1 || { log "meson setup failed (see $out_dir/meson-setup.log)"; return 1; }
  fi
  ninja -C "$BUILD" -j2 >"$out_dir/ninja.log" 2>&1 || { log "build failed (see $out_dir/ninja.log)"; return 1; }
}

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# now_us: microseconds since the epoch (bash 5 builtin, no fork).
now_us() {
  local t=${EPOCHREALTIME/./}
  echo "$t"
}

# bench_seconds T0 T1: the interval between two now_us readings, in seconds.
bench_seconds() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f\n", (b - a) / 1e6 }'
}

# bench_rounds RAW RUNS "TOOL..." FIELD...: RUNS rounds of `run_one TOOL FIELD...`
# (defined by the calling script) for every tool, the order rotating each round
# so that no tool always runs first, on a warm or a cold machine. run_one prints
# seconds, or nothing when the tool does not apply. Appends one line
# "FIELD...<tab>TOOL<tab>ROUND<tab>SECONDS" to RAW per timed run.
bench_rounds() {
  local raw=$1 runs=$2 tools r k tool s fields
  read -r -a tools <<<"$3"
  shift 3
  fields=$(IFS=$'\t'; echo "$*")
  for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < ${#tools[@]}; k++)); do
      tool=${tools[$(((k + r) % ${#tools[@]}))]}
      s=$(run_one "$tool" "$@")
      [ -n "$s" ] || continue
      printf '%s\t%s\t%d\t%s\n' "$fields" "$tool" "$r" "$s" >>"$raw"
      log "$* $tool run $r: ${s}s"
    done
  done
}

# Median of the numbers on stdin.
median() {
  python3 -c 'import sys,statistics; v=[float(x) for x in sys.stdin.read().split()]; print(statistics.median(v) if v else "nan")'
}

# write_results_section NAME TEXT: replaces (or appends) the "## NAME" section
# of bench/RESULTS.md with "## NAME", a blank line and TEXT.
write_results_section() {
  python3 - "$bench_dir/RESULTS.md" "$1" "$2" <<'PY'
import re, sys
path, name, body = sys.argv[1:4]
body = "## %s\n\n%s\n" % (name, body)
text = open(path).read()
m = re.search(r"^## %s\n.*?(?=^## |\Z)" % re.escape(name), text, flags=re.S | re.M)
if m:
    text = text[:m.start()] + body + ("\n" + text[m.end():] if m.end() < len(text) else "")
else:
    text = text.rstrip("\n") + "\n\n" + body
open(path, "w").write(text)
PY
  log "wrote the $1 section of $bench_dir/RESULTS.md"
}

# start_registry DIR: docker-registry (the CNCF distribution registry) on a
# free loopback port, plain HTTP, storage and log under DIR; sets reg_pid
# and R (127.0.0.1:PORT) once it answers. The caller kills $reg_pid.
start_registry() {
  local dir=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$dir/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $dir/registry}
http:
  addr: 127.0.0.1:$port
YML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
  R=127.0.0.1:$port
}

# unmount_under DIR: unmounts every mount below DIR, deepest first (lazily if busy).
unmount_under() {
  local m
  for m in $(grep -o " $1/[^ ]*" /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}

# write_section TITLE TEXT: replaces the "## TITLE" section of bench/RESULTS.md.
write_section() {
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); from report import replace_section; replace_section(sys.argv[2], sys.argv[3], sys.argv[4])' \
    "$bench_dir/tools" "$bench_dir/RESULTS.md" "$1" "$2"
  log "wrote the $1 section of $bench_dir/RESULTS.md"
}
