#!/usr/bin/env python3
"""Workload benchmark (issue 22): what users run, not single operations, on
the kernel's overlayfs, fuse-overlayfs and layerfs over the same lower layers
(bench/images.sh's L0..L4, unpacked). layerfs runs with the options
`layerctl mount` gives it (redirect_dir=on, nosuid, nodev; no uring), so the
figures are the defaults users get. Each repetition runs every engine once,
the order rotating; medians of the repetitions, ratios to the kernel, and
layerfs's FUSE requests per opcode for each workload (the daemon logs its
counters on SIGUSR1; the difference before and after the workload).

  bench/workload.py [--runs N] [--engines kernel,fuse-overlayfs,layerfs]
                    [--groups work,list,read] [--results]

Groups, each on a fresh mount and upper:
  work  untar (a tar of ~2,400 files: python3.11's stdlib without
        __pycache__, perl's, a C project), compileall of the python part, git
        init/add/commit of it all, make -j2 of the C project, touch of the
        lower /usr/share/doc files, chmod -R of the lower /usr/share/perl, rm
        -rf of the untarred tree
  list  ls -laR /usr/lib after two find walks of /usr; os.listdir of a new
        directory of 10,000 files
  read  fio 1 MiB psync sequential reads of the 1 GiB lower file, cold, warm

LAYERFS=/path/to/layerfs (default: build/fuse/layerfs of this checkout);
LAYERFS_BASE=/path/to/an older layerfs for the engine layerfs-base (before and
after a change, side by side);
LAYERFS_OPTS: extra -o options (e.g. uring=1); BENCH_CACHE: bench/images.sh's
cache. Writes bench/RESULTS.md's "## workload" with --results.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import overlay  # noqa: E402  (its helpers: run, umount, daemon_of, drop_caches...)
from overlay import BENCH, REPO, Failed, log, run, umount, daemon_of, drop_caches  # noqa

CACHE = os.environ.get("BENCH_CACHE", os.path.join(BENCH, "cache"))
OUT = os.environ.get("BENCH_OUT", os.path.join(BENCH, "out"))
W = os.path.join(OUT, "wl")
LOGS = os.path.join(OUT, "logs")
ENGINES = ("kernel", "fuse-overlayfs", "layerfs", "layerfs-base")
GROUPS = ("work", "list", "read")
PY = "/usr/bin/python3"
WORK = ("untar", "compileall", "git", "make", "touch", "chmod", "rm")
LIST = ("ls_laR", "listdir")
READ = ("seqread_cold", "seqread_warm")
UNITS = {"seqread_cold": "MiB/s", "seqread_warm": "MiB/s"}
N_LIST = 10000


def c_project(d, n=48):
    """A small C project: N sources, one header, a Makefile."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "p.h"), "w") as f:
        f.write("".join(f"int f{i}(int);\n" for i in range(n)))
    for i in range(n):
        with open(os.path.join(d, f"f{i}.c"), "w") as f:
            f.write('#include <stdio.h>\n#include <string.h>\n#include "p.h"\n')
            f.write(f"static int t{i}[64];\n")
            f.write(f"int f{i}(int x) {{ for (int k = 0; k < 64; ++k) t{i}[k] = x * k;"
                    f" return t{i}[x & 63] + {i}; }}\n")
    with open(os.path.join(d, "main.c"), "w") as f:
        f.write('#include "p.h"\nint main(void) { int s = 0;\n')
        f.write("".join(f"  s += f{i}(s);\n" for i in range(n)))
        f.write("  return s & 1; }\n")
    objs = " ".join(f"f{i}.o" for i in range(n))
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write(f"CFLAGS = -O2\nprog: main.o {objs}\n\t$(CC) -o $@ $^\n"
                "%.o: %.c p.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n")


class Workload:
    def __init__(self, args):
        self.args = args
        self.runs = args.runs
        self.engines = args.engines.split(",")
        self.groups = args.groups.split(",")
        self.layerfs_opts = os.environ.get("LAYERFS_OPTS", "")
        self.times = {}   # (metric, engine) -> [values]
        self.counts = {}  # metric -> [{opcode: n}] (layerfs)

    # ---- setup
    def setup(self):
        for e in self.engines:
            if e not in ENGINES:
                overlay.die(f"unknown engine '{e}'")
        for g in self.groups:
            if g not in GROUPS:
                overlay.die(f"unknown group '{g}'")
        self.layerfs = os.environ.get("LAYERFS") or os.path.join(REPO, "build/fuse/layerfs")
        if "layerfs" in self.engines and not os.access(self.layerfs, os.X_OK):
            overlay.die(f"no layerfs at {self.layerfs} (LAYERFS=...)")
        self.layerfs_base = os.environ.get("LAYERFS_BASE", "")
        if "layerfs-base" in self.engines and not os.access(self.layerfs_base, os.X_OK):
            overlay.die("engine layerfs-base needs LAYERFS_BASE=/path/to/an older layerfs")
        layers = os.path.join(CACHE, "layers")
        self.lowers = [os.path.join(layers, f"L{i}") for i in (4, 3, 2, 1, 0)]
        if not all(os.path.isdir(l) for l in self.lowers):
            overlay.die(f"no layers in {layers}: run bench/images.sh (or set BENCH_CACHE)")
        os.makedirs(LOGS, exist_ok=True)
        self.tar = os.path.join(OUT, "workload.tar")
        if not os.path.exists(self.tar):
            src = os.path.join(OUT, "workload-src")
            shutil.rmtree(src, ignore_errors=True)
            os.makedirs(src)
            for rel in ("L2/usr/lib/python3.11", "L0/usr/share/perl"):
                run(["cp", "-a", os.path.join(layers, rel), src])
            c_project(os.path.join(src, "cproj"))
            run(["tar", "-cf", self.tar + ".tmp", "--exclude=__pycache__", "-C", src, "."])
            os.rename(self.tar + ".tmp", self.tar)
            shutil.rmtree(src)
        self.tar_files = int(subprocess.run(f"tar -tf {self.tar} | grep -vc '/$'", shell=True,
                                            stdout=subprocess.PIPE, text=True).stdout.strip())

    # ---- mounting
    def mount(self, engine):
        for s in ("m", "u", "w"):
            shutil.rmtree(os.path.join(W, s), ignore_errors=True)
            os.makedirs(os.path.join(W, s))
        m = os.path.join(W, "m")
        dirs = f"lowerdir={':'.join(self.lowers)},upperdir={W}/u,workdir={W}/w"
        if engine == "kernel":
            run(["mount", "-t", "overlay", "overlay", "-o", dirs, m])
        elif engine == "fuse-overlayfs":
            run(["fuse-overlayfs", "-o", dirs, m], log_to=f"{LOGS}/fuse-overlayfs.log")
        else:
            binary = self.layerfs if engine == "layerfs" else self.layerfs_base
            # What tools/container_mount.cpp gives the daemon, and a log for
            # the counters.
            self.daemon_log = os.path.join(LOGS, "layerfs-workload.log")
            open(self.daemon_log, "w").close()
            o = (f"{dirs},redirect_dir=on,nosuid,nodev,fsname=layerfs-bench,"
                 f"log={self.daemon_log}" + ("," + self.layerfs_opts if self.layerfs_opts else ""))
            run([binary, "-o", o, m], log_to=f"{LOGS}/layerfs.log")
        return m

    def unmount(self):
        overlay.stop_mount(os.path.join(W, "m"))

    # ---- layerfs's counters
    def counters(self, engine):
        """The daemon's request counts by opcode now (SIGUSR1 makes it log them)."""
        if not engine.startswith("layerfs"):
            return None
        pid = daemon_of(os.path.join(W, "m"))
        if not pid:
            return None
        n0 = open(self.daemon_log).read().count("requests: ")
        os.kill(pid, 10)  # SIGUSR1
        for _ in range(500):
            text = open(self.daemon_log).read()
            if text.count("requests: ") > n0:
                line = text[text.rindex("requests: "):].split("\n")[0]
                body = line[line.index("(") + 1:line.rindex(")")]
                return {k: int(v) for k, v in (p.rsplit(" ", 1) for p in body.split(", ") if p)}
            time.sleep(0.01)
        raise Failed("layerfs did not log its counters on SIGUSR1")

    def measure(self, engine, metric, fn):
        """Times fn() (seconds, or fn's own figure if it returns one), with
        layerfs's requests during it."""
        c0 = self.counters(engine)
        t0 = time.monotonic()
        v = fn()
        dt = time.monotonic() - t0
        c1 = self.counters(engine)
        value = dt if v is None else v
        self.times.setdefault((metric, engine), []).append(value)
        if c0 is not None and c1 is not None:
            delta = {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] - c0.get(k, 0) > 0}
            self.counts.setdefault((metric, engine), []).append(delta)
        log(f"  {engine} {metric} = {value:.3f}")
        os.sync()

    # ---- groups
    def group_work(self, engine):
        m = self.mount(engine)
        t = os.path.join(m, "srv/w")
        os.makedirs(t)
        os.sync()
        try:
            quiet = {"stdout": subprocess.DEVNULL}
            self.measure(engine, "untar", lambda: run(["tar", "-xf", self.tar, "-C", t]) and None)
            self.measure(engine, "compileall", lambda: run(
                [PY, "-m", "compileall", "-q", os.path.join(t, "python3.11")], check=False,
                **quiet) and None)
            git = ["git", "-C", t, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
            self.measure(engine, "git", lambda: [run(git + ["init", "-q"]),
                                                 run(git + ["add", "-A"]),
                                                 run(git + ["commit", "-q", "-m", "x"])] and None)
            self.measure(engine, "make", lambda: run(["make", "-s", "-j2", "-C",
                                                      os.path.join(t, "cproj")], **quiet) and None)
            self.measure(engine, "touch", lambda: run(
                ["find", os.path.join(m, "usr/share/doc"), "-type", "f", "-exec", "touch", "-c", "{}",
                 "+"]) and None)
            self.measure(engine, "chmod", lambda: run(["chmod", "-R", "o-r",
                                                       os.path.join(m, "usr/share/perl")]) and None)
            self.measure(engine, "rm", lambda: run(["rm", "-rf", t]) and None)
        finally:
            self.unmount()

    def group_list(self, engine):
        m = self.mount(engine)
        try:
            for _ in range(2):
                run(["find", os.path.join(m, "usr")], stdout=subprocess.DEVNULL)
            self.measure(engine, "ls_laR", lambda: run(["ls", "-laR", os.path.join(m, "usr/lib")],
                                                       stdout=subprocess.DEVNULL) and None)
            d = os.path.join(m, "srv/many")
            os.makedirs(d)
            for i in range(N_LIST):
                os.close(os.open(os.path.join(d, f"file-{i:05d}"), os.O_CREAT | os.O_WRONLY, 0o644))
            os.sync()

            def listdir():
                if len(os.listdir(d)) != N_LIST:
                    raise Failed("listdir: wrong count")
            self.measure(engine, "listdir", listdir)
        finally:
            self.unmount()

    def fio(self, f, invalidate):
        out = os.path.join(OUT, "fio-wl.json")
        env = {**os.environ, "FILE": f, "SIZE": "1G", "INVALIDATE": invalidate}
        with open(f"{LOGS}/fio.log", "a") as err:
            r = subprocess.run(["fio", "--output-format=json", f"--output={out}", "--readonly",
                                f"{BENCH}/fio/seqread.fio"], env=env, stdout=subprocess.DEVNULL,
                               stderr=err)
        if r.returncode != 0:
            raise Failed("fio seqread")
        return float(overlay.output([sys.executable, f"{BENCH}/tools/fioresult.py", out,
                                     "read_mibs"]))

    def group_read(self, engine):
        m = self.mount(engine)
        f = os.path.join(m, overlay.BIG_REL)
        try:
            drop_caches()
            self.measure(engine, "seqread_cold", lambda: self.fio(f, "1"))
            self.measure(engine, "seqread_warm", lambda: self.fio(f, "0"))
        finally:
            self.unmount()

    # ---- the run
    def main(self):
        self.setup()
        for mp in overlay.mounts_under(W + "/"):
            umount(mp)
        shutil.rmtree(W, ignore_errors=True)
        os.makedirs(W)
        n = len(self.engines)
        try:
            for r in range(self.runs):
                for g in self.groups:
                    for k in range(n):
                        e = self.engines[(k + r) % n]
                        log(f"run {r}: {g} on {e}")
                        try:
                            getattr(self, f"group_{g}")(e)
                        except (Failed, OSError) as ex:
                            log(f"FAILED: {g} on {e} (run {r}): {ex}")
                            for mp in overlay.mounts_under(W + "/"):
                                umount(mp)
                with open(os.path.join(OUT, "workload-partial.md"), "w") as f:
                    f.write(self.report())
        finally:
            for mp in overlay.mounts_under(W + "/"):
                umount(mp)
        body = self.report()
        print(body)
        if self.args.results:
            sys.path.insert(0, os.path.join(BENCH, "tools"))
            import report
            report.replace_section(os.path.join(BENCH, "RESULTS.md"), "workload", body)

    def report(self):
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                stdout=subprocess.PIPE, text=True).stdout.strip()
        metrics = [x for g, ms in (("work", WORK), ("list", LIST), ("read", READ))
                   if g in self.groups for x in ms]
        med = {k: statistics.median(v) for k, v in self.times.items()}
        head = ["workload"] + [e for e in ENGINES if e in self.engines]
        cmp_ = [e for e in ("fuse-overlayfs", "layerfs", "layerfs-base")
                if e in self.engines and "kernel" in self.engines]
        head += [f"{e} / kernel" for e in cmp_]
        if "layerfs" in self.engines and "fuse-overlayfs" in self.engines:
            head.append("fuse-overlayfs / layerfs")
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for mt in metrics:
            unit = UNITS.get(mt, "s")
            cells = [f"{mt} ({unit})"]
            for e in head[1:1 + len([x for x in ENGINES if x in self.engines])]:
                v = med.get((mt, e))
                cells.append("-" if v is None else f"{v:.3f}" if unit == "s" else f"{v:.0f}")
            for e in cmp_:
                a, k = med.get((mt, e)), med.get((mt, "kernel"))
                if unit != "s":
                    a, k = k, a  # throughput: engine / kernel as a speed ratio
                cells.append("-" if not a or not k else f"{a / k:.2f}x")
            if "fuse-overlayfs / layerfs" in head:
                a, b = med.get((mt, "fuse-overlayfs")), med.get((mt, "layerfs"))
                if unit != "s":
                    a, b = b, a
                cells.append("-" if not a or not b else f"{a / b:.2f}x")
            rows.append("| " + " | ".join(cells) + " |")
        reqs = ["", "layerfs's FUSE requests per workload (medians over the runs, by opcode):", "",
                "| workload | engine | total | by opcode |", "|---|---|---|---|"]
        for mt in metrics:
            for e in ("layerfs-base", "layerfs"):
                runs = self.counts.get((mt, e))
                if not runs:
                    continue
                ops = sorted({k for c in runs for k in c})
                m = {k: int(statistics.median([c.get(k, 0) for c in runs])) for k in ops}
                tot = sum(m.values())
                by = ", ".join(f"{k} {v}" for k, v in sorted(m.items(), key=lambda kv: -kv[1]) if v)
                reqs.append(f"| {mt} | {e} | {tot} | {by} |")
        notes = (f"Commit {commit}, {time.strftime('%Y-%m-%d', time.gmtime())}; medians of "
                 f"{self.runs}; kernel {os.uname().release} overlayfs with its defaults here "
                 f"(metacopy={open('/sys/module/overlay/parameters/metacopy').read().strip()}); "
                 f"layerfs with layerctl mount's options"
                 f"{', ' + self.layerfs_opts if self.layerfs_opts else ''}; lower layers "
                 f"bench/images.sh's L0..L4; untar of {self.tar_files} files. "
                 "Seconds (lower is better) except reads (MiB/s, higher is better); ratios: "
                 "engine / kernel and fuse-overlayfs / layerfs, as times (for reads: kernel / "
                 "engine, so above 1 is slower there too). "
                 "Produced by bench/workload.py; 2 cores shared with other builds (noisy).")
        return "\n".join([notes, ""] + rows + reqs) + "\n"


def main():
    ap = argparse.ArgumentParser(
        prog="bench/workload.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--results", action="store_true", help="write RESULTS.md's '## workload'")
    args = ap.parse_args()
    if os.geteuid() != 0:
        overlay.die("run as root")
    Workload(args).main()


if __name__ == "__main__":
    main()
