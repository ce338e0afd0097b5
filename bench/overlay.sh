#!/usr/bin/env bash
# The overlay benchmark's driver is bench/overlay.py; this name stays for the
# commands and notes that call it. Same flags: bench/overlay.py --help.
exec python3 "$(dirname "$0")/overlay.py" "$@"
