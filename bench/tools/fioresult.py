#!/usr/bin/env python3
"""Prints one figure from a fio JSON result (first job).

  fioresult.py FILE read_mibs|read_iops|write_mibs|write_iops|write_p99_us|write_op_us
"""
import json
import sys


def main():
    text = open(sys.argv[1]).read()
    j = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes before the JSON
    what = sys.argv[2]
    rw, _, kind = what.partition("_")
    d = j[rw]
    if kind == "mibs":
        v = d["bw_bytes"] / 2**20
    elif kind == "iops":
        v = d["iops"]
    elif kind == "p99_us":
        v = d["clat_ns"]["percentile"]["99.000000"] / 1000
    elif kind == "op_us":  # mean time of one write (+ its fsync when fsync=1)
        v = 1e6 / d["iops"]
    else:
        raise SystemExit(f"fioresult.py: unknown figure {what}")
    print(f"{v:.3f}")


if __name__ == "__main__":
    main()
