#!/usr/bin/env python3
"""Turns the raw TSV of bench/unpack.sh and bench/overlay.py into markdown
tables of medians and ratios, writes them into a section of bench/RESULTS.md,
and draws the overlay chart with gnuplot.

  report.py unpack RAW --cache DIR --runs N [--notes TEXT] [--commit C] [--results MD]
  report.py overlay RAW --runs N [--notes TEXT] [--commit C] [--results MD] [--chart SVG]
"""
import argparse
import collections
import datetime
import json
import os
import statistics
import subprocess
import sys


def read_tsv(path):
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        return [dict(zip(head, line.rstrip("\n").split("\t"))) for line in f if line.strip()]


def replace_section(md_path, title, body):
    """Replaces the text under '## title' up to the next '## ' heading."""
    text = open(md_path).read() if os.path.exists(md_path) else "# Benchmark results\n"
    lines = text.split("\n")
    head = f"## {title}"
    new = [head, ""] + body.rstrip("\n").split("\n") + [""]
    if head in lines:
        i = lines.index(head)
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = new
    else:
        if lines and lines[-1] != "":
            lines.append("")
        lines += new
    with open(md_path, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.{digits}f}"


def stamp(args):
    s = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.commit:
        s += f", layerfs commit {args.commit}"
    return s


# ---------------------------------------------------------------- unpack

def report_unpack(args):
    rows = read_tsv(args.raw)
    vals = collections.defaultdict(list)
    for r in rows:
        vals[(r["image"], r["layer"], r["tool"])].append(float(r["seconds"]))
    info = {}
    for img in ("gzip", "zstd", "tar"):
        p = os.path.join(args.cache, "images", f"debian-{img}.json")
        if os.path.exists(p):
            info[img] = {l["name"][1:]: l for l in json.load(open(p))["layers"]}
    images = list(dict.fromkeys(r["image"] for r in rows))
    out = [f"Measured {stamp(args)}; median of {args.runs} runs, seconds (lower is better). "
           "`vs tar` and `vs umoci` are how many times faster layerctl is "
           "(target: >= 1 vs tar, >= 2 vs umoci); `tar+sync` is GNU tar followed by `sync -f` "
           "of its output, i.e. tar made as durable as layerctl's result, and `vs tar+sync` "
           "compares with that. Layer `all` = the whole 5-layer image "
           "(layerctl pulls its layers concurrently; tar extracts them one after the other; "
           "umoci unpacks them in order and applies whiteouts).", ""]
    if args.notes:
        out += [args.notes, ""]
    out += ["| image | layer | blob MiB | tar MiB | layerctl s | GNU tar s | tar+sync s | umoci s "
            "| vs tar | vs tar+sync | vs umoci |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for img in images:
        layers = list(dict.fromkeys(r["layer"] for r in rows if r["image"] == img))
        for layer in layers:
            med = {t: (statistics.median(vals[(img, layer, t)]) if vals.get((img, layer, t)) else None)
                   for t in ("layerctl", "tar", "tar+sync", "umoci")}
            ls = list(info.get(img, {}).values()) if layer == "all" else \
                [info.get(img, {}).get(layer)] if info.get(img, {}).get(layer) else []
            blob = sum(l["size"] for l in ls) / 2**20 if ls else None
            tsize = sum(l["tar_size"] for l in ls) / 2**20 if ls else None
            lc = med["layerctl"]
            r_tar = med["tar"] / lc if lc and med["tar"] else None
            r_umoci = med["umoci"] / lc if lc and med["umoci"] else None
            r_sync = med["tar+sync"] / lc if lc and med["tar+sync"] else None
            out.append(f"| {img} | {layer} | {fmt(blob)} | {fmt(tsize)} | {fmt(lc)} | {fmt(med['tar'])} | "
                       f"{fmt(med['tar+sync'])} | "
                       f"{fmt(med['umoci']) if img != 'zstd' else 'no zstd'} | "
                       f"{fmt(r_tar) + 'x' if r_tar else 'n/a'} | {fmt(r_sync) + 'x' if r_sync else 'n/a'} | "
                       f"{fmt(r_umoci) + 'x' if r_umoci else 'n/a'} |")
    out += ["", "Method: `bench/unpack.sh`. Each timed run starts from an empty output "
            "directory (a fresh store for layerctl) after `sync` and a cache drop, with the "
            "blob read once beforehand (input warm, output cold). layerctl's time includes "
            "verifying both digests and the fsyncs that make the layer durable before it is "
            "published; GNU tar and umoci do not fsync (their data is still dirty when they "
            "exit). umoci also writes an mtree manifest of the unpacked rootfs. GNU tar runs "
            "gzip/zstd as a separate process, so its decompression overlaps writing too."]
    text = "\n".join(out)
    print(text)
    if args.results:
        replace_section(args.results, "unpack", text)


# ---------------------------------------------------------------- overlay

# metric -> (label, unit, higher_is_better)
METRICS = collections.OrderedDict([
    ("seqread_cold", ("seq read 1 MiB, cold", "MiB/s", True)),
    ("seqread_warm", ("seq read 1 MiB, warm", "MiB/s", True)),
    ("randread_cold", ("rand read 4 KiB, cold", "IOPS", True)),
    ("randread_warm", ("rand read 4 KiB, warm", "IOPS", True)),
    ("cow_write", ("CoW: open+first 4 KiB write of 1 GiB lower file", "ms", False)),
    ("cow_trunc", ("CoW: same with O_TRUNC", "ms", False)),
    ("cow_append", ("CoW: same with O_APPEND", "ms", False)),
    ("cow_chmod", ("CoW: chmod only", "ms", False)),
    ("randwrite_iops", ("rand write 4 KiB right after the first write", "IOPS", True)),
    ("randwrite_p99", ("rand write 4 KiB right after the first write, p99", "us", False)),
    ("cow_done", ("CoW: first write until the copy-up is complete and durable", "ms", False)),
    ("randwrite_done_iops", ("rand write 4 KiB after the copy-up is complete", "IOPS", True)),
    ("randwrite_done_p99", ("rand write 4 KiB after the copy-up is complete, p99", "us", False)),
    ("seqwrite", ("seq write new file 1 MiB", "MiB/s", True)),
    ("fsync", ("4 KiB write+fsync", "us", False)),
    ("meta_create", ("create small files", "ops/s", True)),
    ("meta_stat", ("stat small files", "ops/s", True)),
    ("meta_read", ("open+read small files", "ops/s", True)),
    ("meta_delete", ("delete small files", "ops/s", True)),
    ("metafs_create", ("create small files, upper on a fresh ext4", "ops/s", True)),
    ("metafs_stat", ("stat small files, upper on a fresh ext4", "ops/s", True)),
    ("metafs_read", ("open+read small files, upper on a fresh ext4", "ops/s", True)),
    ("metafs_delete", ("delete small files, upper on a fresh ext4", "ops/s", True)),
    ("find_cold", ("find / (whole rootfs), cold", "s", False)),
    ("find_warm", ("find / (whole rootfs), warm", "s", False)),
    ("lsr_cold", ("ls -R /usr/lib, cold", "s", False)),
    ("lsr_warm", ("ls -R /usr/lib, warm", "s", False)),
    ("mount_ls", ("mount to first ls", "ms", False)),
    ("rss", ("daemon RSS after find", "MiB", None)),
    ("pc_first", ("page cache, 1st container reading libs", "MiB", None)),
    ("pc_extra", ("page cache, each extra container", "MiB", None)),
])
ENGINES = ["layerfs", "layerfs-uring", "fuse-overlayfs", "kernel", "plain"]


def report_overlay(args):
    rows = read_tsv(args.raw)
    vals = collections.defaultdict(list)
    params = {}
    for r in rows:
        vals[(r["metric"], r["engine"])].append(float(r["value"]))
        params[r["metric"]] = r.get("params", "")
    engines = [e for e in ENGINES if any(k[1] == e for k in vals)]
    args.runs = len({r["run"] for r in rows})
    med = {k: statistics.median(v) for k, v in vals.items()}
    out = [f"Measured {stamp(args)}; median of {args.runs} runs. Ratio columns: the engine's "
           "performance relative to the kernel's overlayfs in the same run (> 1 = faster than "
           "the kernel; for times and latencies this is kernel time / engine time). "
           "`plain` is the lower directory itself (no overlay: the physical limit).", ""]
    if args.notes:
        out += [args.notes, ""]
    head = "| job | unit | " + " | ".join(engines) + " | " + \
        " | ".join(f"{e} vs kernel" for e in engines if e != "kernel") + " |"
    out += [head, "|---|---|" + "---:|" * (len(engines) * 2 - 1)]
    chart = []
    for m, (label, unit, hib) in METRICS.items():
        if not any((m, e) in med for e in engines):
            continue
        p = params.get(m, "")
        cells = [fmt(med.get((m, e))) for e in engines]
        k = med.get((m, "kernel"))
        ratios = []
        crow = []
        for e in engines:
            if e == "kernel":
                continue
            v = med.get((m, e))
            if hib is None or v is None or not k or not v:
                ratios.append("")
                crow.append(None)
                continue
            r = v / k if hib else k / v
            ratios.append(fmt(r) + "x")
            crow.append(r)
        out.append(f"| {label}{(' (' + p + ')') if p else ''} | {unit} | " + " | ".join(cells) +
                   " | " + " | ".join(ratios) + " |")
        if hib is not None:
            chart.append((label, crow))
    text = "\n".join(out)
    if args.chart and chart:
        draw(args.chart, [e for e in engines if e != "kernel"], chart)
        rel = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.results or args.chart)))
        text += f"\n\n![overlay benchmark, ratio to kernel overlayfs]({rel})"
    text += "\n\n" + OVERLAY_METHOD
    print(text)
    if args.results:
        replace_section(args.results, "overlay", text)


OVERLAY_METHOD = """Method: `bench/overlay.py`. Every engine stacks the same five lower layers
(the Debian image's four plus the 1 GiB-file layer); each group of jobs gets a
fresh mount with a fresh upper dir (plain: the merged tree copied once into one
directory, restored after the write jobs). In every repetition each group runs
once per engine, the engine order rotating between repetitions. Reads are fio
(psync, 1 job) over /data/big.bin, the 1 GiB lower file; "warm" runs right
after the same read through the same mount. CoW jobs time, with
`bench/tools/benchtool`, the open + first 4 KiB write of that file on a fresh
mount (or the chmod), then fio rand-writes 4 KiB into it right away; on a
second fresh mount, after the same first write, the benchmark waits until the
copy-up is complete and durable (layerfs copies the rest of the file in the
background and then removes its partial marker from the upper file; the other
engines copy before the first write returns), then runs the same fio job. New-file writes are
buffered (no fsync in the figure); fsync cost is fio 4 KiB writes each followed
by fsync. Metadata: benchtool creates, stats, opens+reads and deletes small
files in a new directory; "upper on a fresh ext4" repeats that with the upper
and work dirs on a newly made ext4 (mkfs defaults, journaled, on a loop device;
plain: that filesystem itself), because this machine's root ext4 has no journal
and there ext4 scans past every recently freed inode on each create, which
slows every engine's creates after the earlier runs' deletes. Mount to first
ls: the engine's program (mount, the FUSE daemon) is run once before, so that
its binary is in the page cache. find and ls -R run after a cache drop (cold) and
again (warm). Page cache: 10 mounts of the image (plain: the same directory
10 times) each read the same set of shared libraries from /usr/lib, after
their pages were evicted from the lower layers (fadvise DONTNEED); the figure
is the growth of the page cache charged to the benchmark's memory cgroup
(the FUSE daemons run in it too, other jobs on the machine do not) after the
first mount and per extra mount."""


def draw(path, engines, chart):
    """Horizontal grouped bars of ratio-to-kernel (log scale) with gnuplot."""
    dat = path + ".dat"
    with open(dat, "w") as f:
        for label, rs in reversed(chart):  # row 0 = last job, drawn at the bottom
            f.write(" ".join(f"{r:.4f}" if r else "NaN" for r in rs) + "\n")
    n = len(chart)
    import math
    vals = [r for _, rs in chart for r in rs if r]
    lo = max(-4, min(-1, math.floor(math.log10(min(vals))))) if vals else -2
    hi = min(5, max(1, math.ceil(math.log10(max(vals))))) if vals else 2
    xtics = ", ".join(f'"{10.0**e:g}" {10.0**e:g}' for e in range(lo, hi + 1))
    colors = {"layerfs": "#1f77b4", "layerfs-uring": "#17becf", "fuse-overlayfs": "#d62728",
              "plain": "#7f7f7f"}
    w = 0.8 / len(engines)
    plots = []
    for i, e in enumerate(engines):
        b0, b1 = -0.4 + w * i, -0.4 + w * (i + 1)
        c = i + 1
        plots.append(f"'{dat}' using (column({c})):($0):({10.0**lo:g}):(column({c})):"
                     f"($0+({b0:.3f})):($0+({b1:.3f})) with boxxyerror "
                     f"lc rgb '{colors.get(e, '#2ca02c')}' title '{e}'")
    tics = ", ".join('"' + l.replace('"', "'") + f'" {n - 1 - i}' for i, (l, _) in enumerate(chart))
    script = f"""set terminal svg size 1000,{140 + 30 * n} dynamic noenhanced font 'sans,11' background '#ffffff'
set output '{path}'
set title 'layerfs benchmark: each engine relative to the kernel overlayfs (1 = kernel, higher is better)'
set logscale x 10
set xrange [{10.0**lo:g}:{10.0**hi:g}]
set xtics ({xtics})
set grid xtics
set ytics ({tics}) font 'sans,10'
set yrange [-0.6:{n - 0.4}]
set key bottom right opaque
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb '#000000' lw 1.5 front
set style fill solid 0.85 noborder
set datafile missing 'NaN'
plot {', '.join(plots)}
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print("report.py: gnuplot failed: " + r.stderr, file=sys.stderr)
    os.unlink(dat)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["unpack", "overlay"])
    ap.add_argument("raw")
    ap.add_argument("--cache")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--notes")
    ap.add_argument("--commit")
    ap.add_argument("--results")
    ap.add_argument("--chart")
    args = ap.parse_args()
    (report_unpack if args.kind == "unpack" else report_overlay)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
