#!/usr/bin/env python3
"""Overlay benchmark (issue 5): layerfs, fuse-overlayfs, the kernel's overlayfs
and the plain directory, each over the same five lower layers of the Debian
image (bench/images.sh; the layers come from a layerctl store when
`layerctl pull` works, else from bench/cache/layers). Every repetition runs
each job group once per engine, the engine order rotating; each group gets a
fresh mount and a fresh upper dir. Prints one table of medians with ratios to
the kernel, writes it to bench/RESULTS.md under "## overlay" and draws
bench/overlay.svg.

  bench/overlay.py [--quick] [--runs N] [--engines layerfs,fuse-overlayfs,kernel,plain]
                   [--groups read,cow,write,meta,metafresh,tree,pagecache]
                   [--layers store|export]
                   [--no-results] [--results]

--quick: small sizes and 1 run, for iterating (written to RESULTS.md only
with --results).
LAYERFS=/path/to/layerfs or BUILD=/path/to/build use an existing build;
LAYERFS_OPTS: extra layerfs -o options (default uring=1; empty: /dev/fuse).

Shell stays for what bench/common.sh already does (installing the packages,
building) and bench/images.sh; the rest runs here.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CACHE = os.environ.get("BENCH_CACHE", os.path.join(BENCH, "cache"))
OUT = os.environ.get("BENCH_OUT", os.path.join(BENCH, "out"))
OVL = os.path.join(OUT, "ovl")
LOGS = os.path.join(OUT, "logs")
# layerfs with its default options (what layerctl mount and podman use: the
# main figure) and layerfs-uring (uring=1, the kernel's fuse.enable_uring on
# while it mounts), beside it.
ENGINES = ("layerfs", "layerfs-uring", "fuse-overlayfs", "kernel", "plain")
GROUPS = ("read", "cow", "write", "meta", "metafresh", "tree", "pagecache")
BIG_REL = "data/big.bin"
URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


class Failed(Exception):
    """A job group failed on one engine; the run goes on with the next."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    sys.exit(f"bench: {msg}")


def run(cmd, log_to=None, check=True, **kw):
    """Runs a command; its output goes to log_to (appended) if given."""
    if log_to:
        with open(log_to, "a") as f:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    else:
        r = subprocess.run(cmd, **kw)
    if check and r.returncode != 0:
        raise Failed(f"{cmd[0]} exited with {r.returncode}")
    return r


def output(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        raise Failed(f"{cmd[0]} exited with {r.returncode}")
    return r.stdout.strip()


def common(fn, env=None):
    """Runs one function of bench/common.sh; its exit status."""
    script = f'source "{BENCH}/common.sh"; {fn}'
    return subprocess.run(["bash", "-c", script], env=env).returncode


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def now_us():
    return time.time_ns() // 1000


def mounts_under(prefix):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp.startswith(prefix):
                out.append(mp)
    return sorted(out, reverse=True)


def umount(path, lazy_fallback=True):
    r = subprocess.run(["umount", path], stderr=subprocess.DEVNULL)
    if r.returncode != 0 and lazy_fallback:
        subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
    return r.returncode == 0


def daemon_of(mnt):
    """The pid of the FUSE daemon serving MNT (its command line names it)."""
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if mnt.encode() in f.read().split(b"\0"):
                    return int(p)
        except OSError:
            continue
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_mount(m):
    """Unmounts M and waits for its FUSE daemon (if any) to exit."""
    pid = daemon_of(m)
    if not umount(m, lazy_fallback=False):
        log(f"umount {m} failed")
        umount(m)
    if pid:
        for _ in range(600):
            if not alive(pid):
                break
            time.sleep(0.1)


def copy_up_wait(path):
    """Milliseconds until the upper copy of PATH is complete: layerfs copies a
    lower file's data up in the background after the first write, and removes
    its partial marker (an xattr on the upper file) once the copy is durable.
    The other engines copy before the first write returns: 0."""
    t0 = time.monotonic()
    while any(x.endswith("layerfs.partial") for x in os.listxattr(path)):
        if time.monotonic() - t0 > 300:
            raise Failed(f"{path}: copy-up not complete after 300 s")
        time.sleep(0.005)
    return (time.monotonic() - t0) * 1000


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.runs = args.runs or (1 if args.quick else 3)
        if args.quick:
            self.read_size, self.runtime, self.seqw_size = "256M", 2, "256M"
            self.fsync_size, self.meta_n, self.pc_mib = "1M", 2000, 30
        else:
            self.read_size, self.runtime, self.seqw_size = "1G", 5, "1G"
            self.fsync_size, self.meta_n, self.pc_mib = "4M", 10000, 100
        self.meta_size, self.pc_mounts = 1024, 10
        self.layerfs_opts = os.environ.get("LAYERFS_OPTS", "")
        self.uring_old = None
        self.raw = os.path.join(OUT, "overlay-raw.tsv")
        self.benchtool = os.path.join(OUT, "benchtool")
        self.run_no = 0
        self.engine = None

    # ---- setup
    def binaries(self):
        self.layerfs_bin = os.environ.get("LAYERFS", "")
        self.layerctl = ""
        build = os.environ.get("BUILD") or os.path.join(OUT, "build")
        env = dict(os.environ)
        if common("bench_build", env) == 0:
            self.layerfs_bin = self.layerfs_bin or os.path.join(build, "fuse/layerfs")
            if os.access(os.path.join(build, "tools/layerctl"), os.X_OK):
                self.layerctl = os.path.join(build, "tools/layerctl")
        self.engines = []
        for e in self.args.engines.split(","):
            if e in ("layerfs", "layerfs-uring"):
                if e == "layerfs-uring" and not os.access(URING_PARAM, os.W_OK):
                    log(f"no FUSE over io_uring in this kernel ({URING_PARAM}): no layerfs-uring")
                elif self.layerfs_bin and os.access(self.layerfs_bin, os.X_OK):
                    self.engines.append(e)
                else:
                    log(f"no layerfs daemon ({self.layerfs_bin or 'not built'}): running without it")
            elif e in ENGINES:
                self.engines.append(e)
            else:
                die(f"unknown engine '{e}'")

    def layers(self):
        """The lower layers, top first."""
        with open(os.path.join(CACHE, "images/debian-zstd.json")) as f:
            diff_ids = [l["diff_id"][7:] for l in json.load(f)["layers"]]
        src = self.args.layers
        self.lowers = []
        if (src or "store") == "store" and self.layerctl:
            store = os.path.join(OUT, "store")
            shutil.rmtree(store, ignore_errors=True)
            pull_log = os.path.join(LOGS, "pull.log")
            open(pull_log, "w").close()
            # --inline-files: every file's data in its layer (store format 1's
            # shape), so the kernel with its default options and fuse-overlayfs
            # read the same trees; format 2's metadata-only entries need the
            # kernel's metacopy=on with data-only layers, which fuse-overlayfs
            # lacks (it would read their sparse zeros).
            r = run([self.layerctl, "--root", store, "pull", "--inline-files",
                     f"oci:{CACHE}/images/debian-zstd:big"], log_to=pull_log, check=False)
            last = (open(pull_log).read().strip().split("\n") or [""])[-1]
            if r.returncode == 0:
                for d in reversed(diff_ids):
                    p = os.path.join(store, "layers/sha256", d, "diff")
                    if not os.path.isdir(p):
                        die(f"layerctl pulled the image but {p} is missing")
                    self.lowers.append(p)
                src = "store"
            elif src == "store":
                die(f"layerctl pull failed: {last}")
            else:
                log(f"layerctl pull does not work yet ({last}): using bench/cache/layers")
        if not self.lowers:
            if src == "store":
                die("--layers store needs a working layerctl")
            self.lowers = [os.path.join(CACHE, f"layers/L{i}") for i in (4, 3, 2, 1, 0)]
            src = "export"
        self.layer_src = src
        self.lowerdir = ":".join(self.lowers)
        log(f"lower layers ({src}): {len(self.lowers)}")

    def cleanup(self):
        for m in mounts_under(OVL + "/"):
            umount(m)

    def set_uring(self):
        """Notes the kernel's fuse.enable_uring, which mount() turns on for
        layerfs-uring's mounts and back to this value for the others (layerfs
        uses the rings by default wherever the kernel offers them, so the
        layerfs engine gets what this kernel gives by default). The kernel
        checks it when the daemon registers its rings, after the mount
        returns, so it stays as set until the next mount; restored at the end."""
        if "layerfs-uring" in self.engines:
            self.uring_old = open(URING_PARAM).read().strip()

    def uring_for(self, engine):
        if self.uring_old is not None:
            with open(URING_PARAM, "w") as f:
                f.write(("Y" if engine == "layerfs-uring" else self.uring_old) + "\n")

    def restore_uring(self):
        if self.uring_old is not None:
            with open(URING_PARAM, "w") as f:
                f.write(self.uring_old + "\n")

    def plain_tree(self):
        """The plain engine: the merged tree copied once into one directory."""
        self.plain = os.path.join(CACHE, "plain")
        done = os.path.join(CACHE, "plain.complete")
        if not os.path.exists(done):
            log(f"copying the merged tree to {self.plain}")
            shutil.rmtree(self.plain, ignore_errors=True)
            d = os.path.join(OVL, "m")
            for s in ("m", "u", "w"):
                os.makedirs(os.path.join(OVL, s), exist_ok=True)
            run(["mount", "-t", "overlay", "overlay", "-o",
                 f"lowerdir={self.lowerdir},upperdir={OVL}/u,workdir={OVL}/w", d])
            run(["cp", "-a", d, self.plain])
            umount(d)
            self.clear_ovl()
            open(done, "w").close()
        self.big_lower = os.path.join(self.lowers[0], BIG_REL)
        if not os.path.isfile(self.big_lower):
            die(f"{self.big_lower} missing")
        self.big_size = os.stat(self.big_lower).st_size

    def restore_plain(self):
        """Undoes what the write jobs did to the plain tree."""
        p = os.path.join(self.plain, BIG_REL)
        with open(p, "rb") as a, open(self.big_lower, "rb") as b:
            same = a.read(4096) == b.read(4096)
        if not same or os.stat(p).st_size != self.big_size:
            shutil.copyfile(self.big_lower, p)
        os.chmod(p, 0o644)
        shutil.rmtree(os.path.join(self.plain, "bench-meta"), ignore_errors=True)
        for n in ("newfile", "fsyncfile"):
            try:
                os.unlink(os.path.join(self.plain, n))
            except FileNotFoundError:
                pass

    def clear_ovl(self):
        for n in os.listdir(OVL):
            p = os.path.join(OVL, n)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)

    # ---- mounting
    def prep_instance(self, name):
        d = os.path.join(OVL, name)
        shutil.rmtree(d, ignore_errors=True)
        for s in ("m", "u", "w"):
            os.makedirs(os.path.join(d, s))

    def mount(self, name, prep=True):
        """Mounts instance NAME at OVL/NAME/m with a fresh upper (unless prep
        is False: prep_instance(NAME) was called already)."""
        d = os.path.join(OVL, name)
        if prep:
            self.prep_instance(name)
        dirs = f"lowerdir={self.lowerdir},upperdir={d}/u,workdir={d}/w"
        e = self.engine
        self.uring_for(e)
        if e == "kernel":
            run(["mount", "-t", "overlay", "overlay", "-o", dirs, f"{d}/m"])
        elif e == "fuse-overlayfs":
            run(["fuse-overlayfs", "-o", dirs, f"{d}/m"], log_to=f"{LOGS}/fuse-overlayfs.log")
        elif e in ("layerfs", "layerfs-uring"):
            opts = dirs + ("," + self.layerfs_opts if self.layerfs_opts else "")
            if e == "layerfs-uring":
                run([self.layerfs_bin, "-o", opts + ",uring=1", f"{d}/m"],
                    log_to=f"{LOGS}/layerfs.log")
            else:
                run([self.layerfs_bin, "-o", opts, f"{d}/m"], log_to=f"{LOGS}/layerfs.log")
        else:
            run(["mount", "--bind", self.plain, f"{d}/m"])

    def stop(self, name):
        """Unmounts NAME and waits for its daemon to exit."""
        stop_mount(os.path.join(OVL, name, "m"))

    def unmount(self, name):
        self.stop(name)
        shutil.rmtree(os.path.join(OVL, name), ignore_errors=True)

    # ---- recording
    def rec(self, metric, value, params):
        v = value if isinstance(value, str) else f"{value:.4f}"
        with open(self.raw, "a") as f:
            f.write(f"{self.run_no}\t{metric}\t{self.engine}\t{v}\t{params}\n")
        log(f"  {self.engine} {metric} = {v}")

    def fio(self, job, figure, env, *extra):
        out = os.path.join(OUT, "fio.json")
        with open(f"{LOGS}/fio.log", "a") as err:
            r = subprocess.run(["fio", "--output-format=json", f"--output={out}", *extra,
                                f"{BENCH}/fio/{job}.fio"], env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=err)
        if r.returncode != 0:
            raise Failed(f"fio {job}")
        return output([sys.executable, f"{BENCH}/tools/fioresult.py", out, figure])

    def tool(self, *args):
        """benchtool's KEY=VALUE output as a dict."""
        out = output([self.benchtool, *args])
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    # ---- job groups: each runs one engine (self.engine) once
    def group_read(self):
        m = os.path.join(OVL, "r/m")
        f, size, rt = os.path.join(m, BIG_REL), self.read_size, str(self.runtime)
        self.mount("r")
        drop_caches()
        v = self.fio("seqread", "read_mibs", {"FILE": f, "SIZE": size, "INVALIDATE": "1"}, "--readonly")
        self.rec("seqread_cold", v, size)
        v = self.fio("seqread", "read_mibs", {"FILE": f, "SIZE": size, "INVALIDATE": "0"}, "--readonly")
        self.rec("seqread_warm", v, size)
        env = {"FILE": f, "SIZE": size, "RUNTIME": rt, "INVALIDATE": "0"}
        v = self.fio("randread", "read_iops", env, "--readonly")
        self.rec("randread_warm", v, f"{rt} s over {size}")
        drop_caches()
        v = self.fio("randread", "read_iops", {**env, "INVALIDATE": "1"}, "--readonly")
        self.rec("randread_cold", v, f"{rt} s over {size}")
        if os.path.exists(os.path.join(OVL, "r/u", BIG_REL)):
            log(f"WARNING: {self.engine} copied {BIG_REL} up on read")
        self.unmount("r")

    def randwrite(self, key):
        """fio random writes into the 1 GiB file."""
        out = os.path.join(OUT, "fio-rw.json")
        env = {"FILE": os.path.join(OVL, "c/m", BIG_REL), "SIZE": str(self.big_size),
               "RUNTIME": str(self.runtime)}
        with open(f"{LOGS}/fio.log", "a") as err:
            r = subprocess.run(["fio", "--output-format=json", f"--output={out}",
                                f"{BENCH}/fio/randwrite.fio"], env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=err)
        if r.returncode != 0:
            raise Failed("fio randwrite")
        fr = [sys.executable, f"{BENCH}/tools/fioresult.py", out]
        self.rec(f"{key}_iops", output(fr + ["write_iops"]), f"{self.runtime} s")
        self.rec(f"{key}_p99", output(fr + ["write_p99_us"]), f"{self.runtime} s")

    def group_cow(self):
        """write, trunc, append, chmod time the first change of the lower file
        (write: then fio random writes right after it); done: the first write
        again, then the wait until the copy-up is complete, then fio."""
        m = os.path.join(OVL, "c/m")
        for mode in ("write", "done", "trunc", "append", "chmod"):
            self.mount("c")
            with open(self.big_lower, "rb") as f:  # the lower file is in the page cache
                while f.read(1 << 20):
                    pass
            os.sync()
            us = float(self.tool("cow", "write" if mode == "done" else mode,
                                 os.path.join(m, BIG_REL))["first_us"])
            if mode == "write":
                self.rec("cow_write", us / 1000, "1 GiB file")
                self.randwrite("randwrite")
            elif mode == "done":
                wait_ms = 0.0 if self.engine == "plain" else copy_up_wait(
                    os.path.join(OVL, "c/u", BIG_REL))
                self.rec("cow_done", us / 1000 + wait_ms, "1 GiB file")
                self.randwrite("randwrite_done")
            else:
                self.rec(f"cow_{mode}", us / 1000, "1 GiB file")
            os.sync()
            self.unmount("c")
            if self.engine == "plain":
                self.restore_plain()

    def group_write(self):
        m = os.path.join(OVL, "w/m")
        v = None
        self.mount("w")
        v = self.fio("seqwrite", "write_mibs", {"FILE": f"{m}/newfile", "SIZE": self.seqw_size})
        self.rec("seqwrite", v, f"{self.seqw_size}, buffered")
        os.sync()
        v = self.fio("fsync", "write_op_us", {"FILE": f"{m}/fsyncfile", "SIZE": self.fsync_size})
        self.rec("fsync", v, self.fsync_size)
        for n in ("newfile", "fsyncfile"):
            os.unlink(os.path.join(m, n))
        os.sync()
        self.unmount("w")

    def run_meta(self, d, prefix):
        """benchtool meta in D/bench-meta, recorded."""
        out = self.tool("meta", os.path.join(d, "bench-meta"), str(self.meta_n), str(self.meta_size))
        for k in ("create", "stat", "read", "delete"):
            self.rec(f"{prefix}_{k}", out[k], f"{self.meta_n} files of {self.meta_size} B")
        os.sync()

    def group_meta(self):
        self.mount("t")
        self.run_meta(os.path.join(OVL, "t/m"), "meta")
        self.unmount("t")

    def group_metafresh(self):
        """The same on an upper (and work) dir of a freshly made ext4 (mkfs
        defaults, with a journal), as on most hosts: this machine's root ext4
        has no journal, and there ext4 looks past every inode freed in the
        last minutes before it reuses one (recently_deleted()), which makes
        every engine's creates slow after the previous runs' deletes. plain:
        the fresh filesystem itself."""
        d, img = os.path.join(OVL, "t"), os.path.join(OUT, "meta-ext4.img")
        shutil.rmtree(d, ignore_errors=True)
        if os.path.exists(img):
            os.unlink(img)
        os.makedirs(d)
        run(["truncate", "-s", "2G", img])
        run(["mkfs.ext4", "-q", "-F", img], stdout=subprocess.DEVNULL)
        run(["mount", "-o", "loop", img, d])
        try:
            for s in ("m", "u", "w"):
                os.makedirs(os.path.join(d, s))
            if self.engine == "plain":
                self.run_meta(os.path.join(d, "u"), "metafs")
            else:
                self.mount("t", prep=False)
                try:
                    self.run_meta(os.path.join(d, "m"), "metafs")
                finally:
                    self.stop("t")
        finally:
            umount(d)
            shutil.rmtree(d, ignore_errors=True)
            os.unlink(img)

    def timed(self, cmd):
        t0 = now_us()
        run(cmd, stdout=subprocess.DEVNULL)
        return now_us() - t0

    def group_tree(self):
        m = os.path.join(OVL, "f/m")
        # The binaries are in the page cache (the previous engine's cold find
        # dropped it): this measures the engine, not the disk.
        run(["ls", "/"], stdout=subprocess.DEVNULL)
        warm = {"layerfs": [self.layerfs_bin, "--version"],
                "layerfs-uring": [self.layerfs_bin, "--version"],
                "fuse-overlayfs": ["fuse-overlayfs", "--version"]}.get(self.engine, ["mount", "--version"])
        subprocess.run(warm, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.prep_instance("f")
        t0 = now_us()
        self.mount("f", prep=False)
        run(["ls", m], stdout=subprocess.DEVNULL)
        self.rec("mount_ls", (now_us() - t0) / 1000, "")
        for what, cmd in (("find", ["find", m]), ("lsr", ["ls", "-R", f"{m}/usr/lib"])):
            drop_caches()
            self.rec(f"{what}_cold", self.timed(cmd) / 1e6, "")
            self.rec(f"{what}_warm", self.timed(cmd) / 1e6, "")
        pid = daemon_of(m)
        if pid:
            with open(f"/proc/{pid}/status") as f:
                kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            self.rec("rss", f"{kib / 1024:.1f}", "")
        self.unmount("f")

    # ---- page cache
    def pagecache_setup(self):
        """The biggest shared libraries under /usr/lib until pc_mib MiB, and
        where to read the page cache of this job's memory cgroup (the FUSE
        daemons started here are in it too), so other jobs on the machine do
        not count; else the system-wide Cached of /proc/meminfo."""
        files = []
        for d, _, names in os.walk(os.path.join(self.plain, "usr/lib")):
            for n in names:
                p = os.path.join(d, n)
                if ".so" in n and os.path.isfile(p) and not os.path.islink(p):
                    files.append((os.path.getsize(p), os.path.relpath(p, self.plain)))
        self.pc_files, total = [], 0
        for size, rel in sorted(files, reverse=True):
            if total >= self.pc_mib << 20:
                break
            self.pc_files.append(rel)
            total += size
        self.pc_bytes = total
        self.cg_stat = None
        cg = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                num, ctrl, path = line.rstrip("\n").split(":", 2)
                cg["0" if num == "0" else ctrl] = path
        v1 = f"/sys/fs/cgroup/memory{cg.get('memory', '')}/memory.stat"
        v2 = f"/sys/fs/cgroup{cg.get('0', '')}/memory.stat"
        if "memory" in cg and os.access(v1, os.R_OK):
            self.cg_stat = v1
        elif "0" in cg and os.access(v2, os.R_OK) and any(
                l.startswith("file ") for l in open(v2)):
            self.cg_stat = v2

    def page_cache_kib(self):
        if self.cg_stat:
            for line in open(self.cg_stat):
                k, v = line.split()
                if k in ("cache", "file"):
                    return int(v) // 1024
        for line in open("/proc/meminfo"):
            if line.startswith("Cached:"):
                return int(line.split()[1])
        return 0

    def evict_pc_files(self):
        """Drops the libraries' pages from the lower layers and the plain tree."""
        for root in [self.plain] + self.lowers:
            for rel in self.pc_files:
                try:
                    fd = os.open(os.path.join(root, rel), os.O_RDONLY | os.O_NOFOLLOW)
                except OSError:
                    continue
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)

    def group_pagecache(self):
        # Something else dropping caches (another job on the machine) shows up
        # as a shrinking page cache: then the attempt is repeated with fresh
        # mounts.
        n = self.pc_mounts
        for _ in range(4):
            for i in range(n):
                self.mount(f"p{i}")
            os.sync()
            self.evict_pc_files()
            c0 = prev = c = self.page_cache_kib()
            ok, c1 = True, c0
            for i in range(n):
                for rel in self.pc_files:
                    with open(os.path.join(OVL, f"p{i}/m", rel), "rb") as f:
                        while f.read(1 << 20):
                            pass
                c = self.page_cache_kib()
                ok = ok and c >= prev - 1024
                if i == 0:
                    c1 = c
                prev = c
            for i in range(n):
                self.unmount(f"p{i}")
            if ok:
                break
            log("  page cache shrank during the measurement (caches dropped elsewhere?): again")
        else:
            raise Failed("the page cache kept shrinking")
        p = f"{len(self.pc_files)} libraries, {self.pc_bytes >> 20} MiB"
        self.rec("pc_first", f"{(c1 - c0) / 1024:.1f}", p)
        self.rec("pc_extra", f"{(c - c1) / 1024 / (n - 1):.1f}", p)

    # ---- the run
    def main(self):
        if common("bench_install_deps") != 0:
            die("installing the packages failed")
        run(["bash", f"{BENCH}/images.sh"])
        os.makedirs(LOGS, exist_ok=True)
        run(["cc", "-O2", "-Wall", "-o", self.benchtool, f"{BENCH}/tools/benchtool.c"])
        self.binaries()
        self.layers()
        self.set_uring()
        try:
            self.cleanup()
            shutil.rmtree(OVL, ignore_errors=True)
            os.makedirs(OVL)
            self.plain_tree()
            self.measure()
        finally:
            self.cleanup()
            self.restore_uring()
        self.report()

    def measure(self):
        groups = self.args.groups.split(",")
        for g in groups:
            if g not in GROUPS:
                die(f"unknown group '{g}'")
        if "pagecache" in groups:
            self.pagecache_setup()
        with open(self.raw, "w") as f:
            f.write("run\tmetric\tengine\tvalue\tparams\n")
        n = len(self.engines)
        log(f"engines: {' '.join(self.engines)}; groups: {' '.join(groups)}; runs: {self.runs}"
            + (" (quick)" if self.quick else ""))
        for self.run_no in range(self.runs):
            for g in groups:
                for k in range(n):
                    self.engine = self.engines[(k + self.run_no) % n]
                    log(f"run {self.run_no}: {g} on {self.engine}")
                    try:
                        getattr(self, f"group_{g}")()
                    except (Failed, OSError, KeyError, ValueError) as e:
                        log(f"FAILED: {g} on {self.engine} (run {self.run_no}): {e}; see {LOGS}")
                        self.cleanup()
                        self.clear_ovl()
                    if self.engine == "plain":
                        self.restore_plain()

    def report(self):
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True).stdout.strip() or "?"
        fv = subprocess.run(["fuse-overlayfs", "--version"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True).stdout
        fovl = next((l for l in fv.split("\n") if "fuse-overlayfs" in l.lower()), "fuse-overlayfs")
        try:
            metacopy = open("/sys/module/overlay/parameters/metacopy").read().strip()
        except OSError:
            metacopy = "?"
        src = ("a layerctl store (pulled with --inline-files)" if self.layer_src == "store"
               else "bench/cache/layers (GNU tar)")
        notes = (f"Engines: {' '.join(self.engines)}; layerfs options: "
                 f"{self.layerfs_opts or 'the defaults'} (layerfs-uring: and uring=1, with the kernel's "
                 f"fuse.enable_uring on for its mounts, the kernel's own value for the others); lower layers from {src}, 5 layers; {fovl}; "
                 f"kernel {os.uname().release} "
                 f"overlayfs with default options (metacopy={metacopy}); {os.cpu_count()} cores "
                 "shared with other builds (noisy).")
        if self.quick:
            notes += (f" Quick mode: reads of {self.read_size} of the 1 GiB file, {self.runtime} s "
                      f"random I/O, {self.seqw_size} new file, {self.meta_n} small files, "
                      f"{self.pc_mib} MiB of libraries.")
        cmd = [sys.executable, f"{BENCH}/tools/report.py", "overlay", self.raw, "--runs",
               str(self.runs), "--notes", notes, "--commit", commit]
        if self.args.write_results:
            cmd += ["--results", f"{BENCH}/RESULTS.md", "--chart", f"{BENCH}/overlay.svg"]
        else:
            cmd += ["--chart", f"{OUT}/overlay.svg"]
        run(cmd)


def main():
    ap = argparse.ArgumentParser(
        prog="bench/overlay.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 run")
    ap.add_argument("--runs", type=int, help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--layers", choices=["store", "export"])
    ap.add_argument("--no-results", dest="results", action="store_const", const=0)
    ap.add_argument("--results", dest="results", action="store_const", const=2,
                    help="write RESULTS.md even with --quick")
    args = ap.parse_args()
    if args.results is None:
        args.results = 0 if args.quick else 1
    args.write_results = args.results >= 1
    if os.geteuid() != 0:
        die("run as root")
    Bench(args).main()


if __name__ == "__main__":
    main()
