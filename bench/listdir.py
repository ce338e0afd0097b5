#!/usr/bin/env python3
"""Listing benchmark (issue 22): os.listdir of a new directory of 10,000
empty files, made through the mount (so the directory exists only in the
upper, as in bench/workload.py's "listdir"), on the kernel's overlayfs,
fuse-overlayfs and layerfs (default options; LAYERFS_BASE adds an older
daemon as layerfs-base), each over an empty lower layer and a fresh upper,
many alternating rounds (one listing is ~10 ms, so a round is cheap and the
medians need many). Also the same directory listed directly in the upper
after the kernel's unmount: the underlying filesystem's own cost.

  bench/listdir.py [--rounds N] [--files N]

LAYERFS=/path/to/layerfs (default: build/fuse/layerfs of this checkout);
LAYERFS_BASE=/path/to/an older layerfs. Prints the medians and ratios.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def mount(engine, d, daemons):
    for s in "lumw":
        os.makedirs(os.path.join(d, s))
    o = f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w"
    if engine == "kernel":
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", o, f"{d}/m"], check=True)
    elif engine == "fuse-overlayfs":
        subprocess.run(["fuse-overlayfs", "-o", o, f"{d}/m"], check=True)
    else:
        subprocess.run([daemons[engine], "-o", o, f"{d}/m"], check=True)


def unmount(m):
    subprocess.run(["umount", m], check=True)
    for _ in range(100):  # the daemon lets go of the upper
        if not os.path.ismount(m):
            break
        time.sleep(0.01)
    time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--files", type=int, default=10000)
    args = ap.parse_args()
    daemons = {"layerfs": os.environ.get("LAYERFS") or os.path.join(HERE, "..", "build/fuse/layerfs")}
    if os.environ.get("LAYERFS_BASE"):
        daemons["layerfs-base"] = os.environ["LAYERFS_BASE"]
    engines = ["kernel", *daemons]
    if shutil.which("fuse-overlayfs"):
        engines.insert(1, "fuse-overlayfs")
    res = {e: [] for e in engines + ["upper, directly"]}
    top = tempfile.mkdtemp(prefix="bench-listdir.", dir="/var/tmp")
    try:
        for r in range(args.rounds):
            for k in range(len(engines)):
                e = engines[(k + r) % len(engines)]
                d = os.path.join(top, f"{e}-{r}")
                mount(e, d, daemons)
                many = os.path.join(d, "m/srv/many")
                os.makedirs(many)
                for i in range(args.files):
                    os.close(os.open(os.path.join(many, f"file-{i:05d}"), os.O_CREAT | os.O_WRONLY, 0o644))
                os.sync()
                t = time.monotonic()
                n = len(os.listdir(many))
                res[e].append((time.monotonic() - t) * 1000)
                if n != args.files:
                    raise SystemExit(f"{e}: listed {n} names, not {args.files}")
                unmount(os.path.join(d, "m"))
                if e == "kernel":
                    t = time.monotonic()
                    len(os.listdir(os.path.join(d, "u/srv/many")))
                    res["upper, directly"].append((time.monotonic() - t) * 1000)
                shutil.rmtree(d)
    finally:
        for dirpath, _, _ in os.walk(top):
            if os.path.ismount(dirpath):
                subprocess.run(["umount", "-l", dirpath])
        shutil.rmtree(top, ignore_errors=True)
    k = statistics.median(res["kernel"])
    print(f"os.listdir of a new directory of {args.files} files, medians of {args.rounds} "
          "alternating rounds (ms):\n")
    print("| engine | median ms | vs kernel | runs |\n|---|---:|---:|---|")
    for e, v in res.items():
        m = statistics.median(v)
        print(f"| {e} | {m:.1f} | {m / k:.2f}x | {' '.join(f'{x:.1f}' for x in v)} |")


if __name__ == "__main__":
    main()
