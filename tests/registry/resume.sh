#!/usr/bin/env bash
# A connection cut mid-layer (a proxy resets it after N bytes) is resumed with
# Range; a registry that ignores Range (200) or answers another range (a
# mismatched Content-Range) makes the download restart cleanly; 503 and 429
# with Retry-After are retried. Digests are verified after every variant.
source "$SRCDIR/tests/registry/lib.sh"

start_registry plain
make_trees "$WORK/t"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression gzip --tag gz --layer "$WORK/t/base" --layer "$WORK/t/mid" --layer "$WORK/t/top"
"$MKIMAGE" --out "$WORK/oci" --format oci --compression zstd --tag zst --layer "$WORK/t/base" --layer "$WORK/t/mid"
push "$WORK/oci" gz "127.0.0.1:$REG_plain_PORT/app/gz:1"
push "$WORK/oci" zst "127.0.0.1:$REG_plain_PORT/app/zst:1"
CUT=1000000

# resumes_of FILE: total resumes in a regfetch report.
resumes_of() { "$PY" -c 'import json,sys; print(sum(l["resumes"] for l in json.load(open(sys.argv[1]))["layers"]))' "$1"; }

step "honest registry: the cut layer resumes with Range (206)"
start_proxy honest "$REG_plain_PORT" --cut-after $CUT --range honest
"$REGFETCH" "127.0.0.1:$PROXY_honest_PORT/app/gz:1" >"$WORK/out.json" || fail "resumed fetch"
cat "$WORK/proxy-honest.log"
grep -qE "GET /v2/app/gz/blobs/sha256:[0-9a-f]+ range=- .* -> 200 cut" "$WORK/proxy-honest.log" || fail "no cut happened"
grep -qE "GET /v2/app/gz/blobs/sha256:[0-9a-f]+ range=bytes=[1-9][0-9]*- .* -> 206" "$WORK/proxy-honest.log" \
  || fail "no Range request after the cut"
# The resumed request starts where the delivered bytes end, never at 0 and never past the cut.
"$PY" - "$WORK/proxy-honest.log" $CUT <<'PY' || fail "Range offset outside (0, cut]"
import re, sys
offs = [int(m) for m in re.findall(r"range=bytes=(\d+)-", open(sys.argv[1]).read())]
assert offs and all(0 < o <= int(sys.argv[2]) for o in offs), offs
PY
[ "$(resumes_of "$WORK/out.json")" -ge 1 ] || fail "regfetch counted no resume"

step "layerctl pull through the cutting proxy (gzip and zstd)"
start_proxy pull "$REG_plain_PORT" --cut-after $CUT --range honest
"$LAYERCTL" pull -q "127.0.0.1:$PROXY_pull_PORT/app/gz:1" >/dev/null || fail "pull gz with a cut"
"$LAYERCTL" pull -q "127.0.0.1:$PROXY_pull_PORT/app/zst:1" >/dev/null || fail "pull zstd with a cut"
grep -qE "range=bytes=[1-9][0-9]*- .* -> 206" "$WORK/proxy-pull.log" || fail "pull made no Range request"
f=$(find "$LAYERFS_ROOT/layers" -path '*/diff/usr/bin/blob' | head -1)
[ -n "$f" ] && cmp -s <(layer_cat "$f") "$WORK/t/base/usr/bin/blob" || fail "resumed layer content differs"

step "registry ignores Range (200): restart, skip the delivered bytes"
start_proxy ignore "$REG_plain_PORT" --cut-after $CUT --range ignore
"$REGFETCH" "127.0.0.1:$PROXY_ignore_PORT/app/gz:1" >/dev/null || fail "fetch with Range ignored"
grep -qE "range=bytes=[1-9][0-9]*- .* -> 200$" "$WORK/proxy-ignore.log" || fail "no 200 to a Range request"

step "registry answers another range (mismatched Content-Range): clean restart"
start_proxy shift "$REG_plain_PORT" --cut-after $CUT --range shift
"$REGFETCH" "127.0.0.1:$PROXY_shift_PORT/app/gz:1" >/dev/null || fail "fetch with a shifted range"
cat "$WORK/proxy-shift.log"
grep -qE "range=bytes=[1-9][0-9]*- .* -> 206" "$WORK/proxy-shift.log" || fail "no shifted 206"
# After the mismatched 206, the whole blob is asked for again without Range.
[ "$(count_lines 'blobs/sha256:[0-9a-f]+ range=- .* -> 200$' "$WORK/proxy-shift.log")" -ge 1 ] \
  || fail "no clean restart after the mismatched Content-Range"

step "Ctrl-C mid-pull leaves the store consistent; the next pull completes"
rm -rf "$LAYERFS_ROOT"
start_proxy slow "$REG_plain_PORT" --delay-blobs 1
# Background jobs of a script start with SIGINT ignored: restore it, as a terminal would have it.
"$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
  "$LAYERCTL" pull -q "127.0.0.1:$PROXY_slow_PORT/app/gz:1" >/dev/null 2>&1 &
pull=$!
sleep 1.5
kill -INT $pull
if wait $pull; then fail "the interrupted pull reported success"; fi
if "$LAYERCTL" images | grep -q "app/gz"; then fail "an interrupted pull published the image"; fi
"$LAYERCTL" pull -q "127.0.0.1:$PROXY_slow_PORT/app/gz:1" >/dev/null || fail "pull after the interrupted one"
"$LAYERCTL" images | grep -q "app/gz" || fail "image missing after the second pull"
f=$(find "$LAYERFS_ROOT/layers" -path '*/diff/usr/bin/blob' | head -1)
[ -n "$f" ] && cmp -s <(layer_cat "$f") "$WORK/t/base/usr/bin/blob" || fail "layer content after the interrupted pull"

step "503 and 429 with Retry-After are retried"
start_proxy flaky "$REG_plain_PORT" --manifest-503 2 --manifest-429 1
t0=$(date +%s%N)
"$REGFETCH" "127.0.0.1:$PROXY_flaky_PORT/app/gz:1" >/dev/null || fail "no retry after 503/429"
t1=$(date +%s%N)
[ "$(count_lines '-> 503 injected' "$WORK/proxy-flaky.log")" -eq 2 ] || fail "503s not seen"
[ "$(count_lines '-> 429 injected' "$WORK/proxy-flaky.log")" -eq 1 ] || fail "429 not seen"
# Three Retry-After: 1 waits.
[ $(( (t1 - t0) / 1000000 )) -ge 2900 ] || fail "Retry-After not honoured ($(( (t1 - t0) / 1000000 )) ms)"
start_proxy down "$REG_plain_PORT" --manifest-503 100
expect_fail "HTTP 503" "$REGFETCH" "127.0.0.1:$PROXY_down_PORT/app/gz:1"
echo PASS
