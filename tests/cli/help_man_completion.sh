#!/usr/bin/env bash
# `layerctl help [COMMAND]` prints what `--help` prints; the man pages made at
# build time carry every command's and layerfs's --help text; `meson install`
# puts the man pages, the bash completion and the storage.conf snippet in
# place; the completion completes commands, options and image names.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
: "${BUILDDIR:?}" "${LAYERFS:?}"

step() { echo "--- $*"; }
step "help"
[ "$(lc help)" = "$(lc --help)" ] || fail "'layerctl help' differs from --help"
commands=$(lc --help | sed -n '/^Commands:/,/^$/s/^  \([a-z]*\) .*/\1/p')
[ "$(echo "$commands" | wc -l)" -ge 20 ] || fail "too few commands listed: $commands"
for c in $commands; do
  [ "$c" = help ] && continue
  want=$(lc "$c" --help)
  [ "$(lc help "$c")" = "$want" ] || fail "'layerctl help $c' differs from '$c --help'"
  [ -n "$want" ] || fail "$c has no help text"
done
for c in run start pull; do echo "$commands" | grep -qx "$c" || fail "no '$c' in the command list"; done
rc=0; lc help nope 2>"$T/err" || rc=$?
[ "$rc" -eq 2 ] || fail "help of an unknown command: exit $rc"
expect_contains "$(cat "$T/err")" "unknown command 'nope'"
rc=0; lc help pull push 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "help with two commands: exit $rc"

step "man pages: every usage line of --help, as roff text"
unroff() { sed -e 's/\\-/-/g; s/\\e/\\/g; s/^\\&//'; }
man1=$BUILDDIR/data/layerctl.1
[ -s "$man1" ] || fail "no $man1"
head -1 "$man1" | grep -q '^\.TH LAYERCTL 1' || fail "$man1 has no .TH"
unroff <"$man1" >"$T/layerctl.txt"
for c in $commands; do
  [ "$c" = help ] && continue
  lc "$c" --help | while IFS= read -r line; do
    [ -z "$line" ] && continue
    grep -qxF -- "$line" "$T/layerctl.txt" || fail "layerctl.1 lacks '$line' of '$c --help'"
  done
done
unroff <"$BUILDDIR/data/layerfs.1" >"$T/layerfs.txt"
"$LAYERFS" --help | tail -n +2 | while IFS= read -r line; do
  [ -z "$line" ] && continue
  grep -qxF -- "$line" "$T/layerfs.txt" || fail "layerfs.1 lacks '$line' of layerfs --help"
done
if command -v groff >/dev/null; then
  groff -man -Tutf8 -ww "$man1" >/dev/null 2>"$T/groff.err" || fail "groff: $(cat "$T/groff.err")"
  [ ! -s "$T/groff.err" ] || fail "groff warns: $(cat "$T/groff.err")"
fi

step "meson install"
DESTDIR=$T/inst meson install -C "$BUILDDIR" --no-rebuild --quiet >"$T/install.log" 2>&1 ||
  { cat "$T/install.log"; fail "meson install"; }
for f in bin/layerctl bin/layerfs share/man/man1/layerctl.1 share/man/man1/layerfs.1 \
  share/bash-completion/completions/layerctl share/layerfs/storage.conf; do
  n=$(find "$T/inst" -path "*/$f" | wc -l)
  [ "$n" -eq 1 ] || fail "meson install: no $f (found $n): $(cd "$T/inst" && find . -type f)"
done
conf=$(find "$T/inst" -path '*/share/layerfs/storage.conf')
grep -Eq '^mount_program = "/.*/bin/layerfs"$' "$conf" || fail "storage.conf: $(cat "$conf")"
python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$conf" 2>/dev/null ||
  python3 -c 'import sys, toml; toml.load(sys.argv[1])' "$conf" || fail "storage.conf is not TOML"

step "bash completion"
comp=$(find "$T/inst" -path '*/completions/layerctl')
make_trees
"$MKIMAGE" --out "$T/img" --format oci --tag t --layer "$T/base" >/dev/null
lc -q pull "oci:$T/img:t" >/dev/null
complete_words() {  # complete_words WORD...: what <TAB> after the words offers
  bash -c '
    PATH=$(dirname "$LAYERCTL"):$PATH
    . "$0"
    COMP_WORDS=(layerctl "$@"); COMP_CWORD=$(($# ))
    _layerctl
    printf "%s\n" "${COMPREPLY[@]}"' "$comp" "$@"
}
[ "$(complete_words pu)" = "$(printf 'pull\npush')" ] || fail "'pu': $(complete_words pu)"
complete_words st | grep -qx start || fail "'st': no start"
complete_words pull --tls | grep -qx -- --tls-verify || fail "pull --tls: $(complete_words pull --tls)"
complete_words --root "$STORE" mount oci | grep -qx "oci:$T/img:t" ||
  fail "mount oci: $(complete_words --root "$STORE" mount oci)"
echo PASS
