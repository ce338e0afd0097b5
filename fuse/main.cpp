// layerfs: the FUSE union filesystem daemon.
//   layerfs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,...] MOUNTPOINT
// Options as fuse-overlayfs takes them (so container tools can run it as their
// overlay mount_program). Every bad option or unusable directory is reported
// before anything is mounted; then it detaches (unless -f) and serves the
// mount until it is unmounted or gets SIGTERM/SIGINT/SIGHUP (it unmounts
// first).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "daemon.hpp"
#include "lazy_loader.hpp"
#include "log.hpp"
#include "mount_options.hpp"
#include "overlay/overlay.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace {

constexpr const char* kUsage =
    "usage: layerfs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPT...] "
    "MOUNTPOINT\n"
    "\n"
    "Serves the union of the lower directories (top first) and, if given, the\n"
    "copy-on-write upper directory at MOUNTPOINT, in the kernel overlayfs format.\n"
    "\n"
    "  -f                 stay in the foreground (log to stderr)\n"
    "  -d                 debug: foreground, log every request\n"
    "  -s                 single-threaded\n"
    "  -o lowerdir=A:B    read-only layers, top first (':' and ',' escaped with '\\')\n"
    "  -o upperdir=U      the writable layer; needs workdir=W on the same filesystem\n"
    "  -o workdir=W       scratch directory for atomic copy-up\n"
    "  -o datadir=D       a layerfs store's objects/: lower files carrying the store's\n"
    "                     metacopy/redirect markers read their data from D\n"
    "  -o lazy            with datadir: fetch the content objects of lazily pulled\n"
    "                     layers (layerctl pull --lazy) from their registry on open\n"
    "  -o lazy_fetch_all  -o lazy, and complete those layers in the background: what\n"
    "                     earlier mounts opened first, the eStargz landmark, then each\n"
    "                     whole blob, verified as a pull does (the layer becomes an\n"
    "                     ordinary one); opens pre-empt it\n"
    "  -o lazy_rate=N     the background completion's bytes a second (default 64 MiB,\n"
    "                     0: no limit)\n"
    "  -o metacopy=on|off also follow the kernel's metadata-only files in lower layers\n"
    "                     (default off; chmod, chown, touch -h and xattrs of a lower\n"
    "                     file always copy its metadata only, data follows on write)\n"
    "  -o ro              read-only mount (no upperdir needed)\n"
    "  -o uidmapping=D:M:N[:...], gidmapping=...   map ids as fuse-overlayfs does: N ids\n"
    "                     from D on disk show as M in the mount, and back on writes\n"
    "  -o squash_to_root, squash_to_uid=N, squash_to_gid=N   show every file as owned by them\n"
    "  -o fsync=0         do not fsync (copy-up, fsync(2)); also 'volatile'\n"
    "  -o passthrough=0|1 read and write open files in the kernel (default 1, as root)\n"
    "  -o uring=0|1       FUSE over io_uring where the kernel allows it (default 1: used\n"
    "                     when /sys/module/fuse/parameters/enable_uring = Y, else /dev/fuse)\n"
    "  -o threaded=0|1, noacl, static_nlink, timeout=SECONDS, writeback=0|1, userxattr\n"
    "  -o noxattrs=1      no xattrs (nor ACLs) through the mount: ENOTSUP\n"
    "  -o xattr_permissions=0|1|2 (1, 2: owners and modes of files and directories kept\n"
    "     in the security. / user.fuseoverlayfs.override_stat xattr), log=FILE\n"
    "  -o relatime, strictatime, noatime, atime, norelatime, nostrictatime, diratime,\n"
    "     nodiratime: when reads update access times in the upper layer, as for the\n"
    "     kernel's mount (default relatime; lower layers: never)\n"
    "\n"
    "The daemon counts the FUSE requests it gets by opcode and logs the counts at\n"
    "unmount, and whenever it gets SIGUSR1 (kill -USR1 PID) while mounted.\n"
    "\n"
    "  -o allow_other, allow_root, default_permissions, suid, nosuid, dev, nodev, exec,\n"
    "     noexec, fsname=, subtype=, context=...  (passed to FUSE)\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "layerfs: %s\n", msg.c_str());
  std::fprintf(stderr, "Try 'layerfs --help'.\n");
  return 2;
}

void raise_fd_limit() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Logs the request counts on SIGUSR1, from a thread of its own that waits
// for the signal; start() blocks it in the calling thread, so every thread
// started after that (the loop's, the overlay's) leaves it to this one.
class StatsOnSignal {
 public:
  explicit StatsOnSignal(const layer::fuse::RequestStats& s) : stats_(s) {}
  ~StatsOnSignal() { stop(); }
  // SIGUSR1 is blocked in every thread from before the mount appears (its
  // default action would end the daemon): block() first, start() later.
  static bool block() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
  }
  void start() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    thread_ = std::thread([this, set] {
      int sig = 0;
      while (sigwait(&set, &sig) == 0 && !stop_.load())
        layer::fuse::log_info("%s", stats_.summary().c_str());
    });
  }
  void stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

 private:
  const layer::fuse::RequestStats& stats_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// The lazy layers' background work: their completion (with
// -o lazy_fetch_all), and the access lists saved every few seconds, so that
// a daemon killed mid-run leaves most of its list, until `stop`.
void lazy_background(layer::lazy::LazyService& lazy, const layer::fuse::MountOptions& opts,
                     const std::atomic<bool>& stop) {
  using namespace std::chrono;
  if (opts.lazy_fetch_all) {
    auto t0 = steady_clock::now();
    size_t done = lazy.complete_all({opts.lazy_rate}, stop);
    if (!stop.load())
      layer::fuse::log_info(
          "lazy: background completion done in %.1f s, %zu of %zu layers complete",
          duration<double>(steady_clock::now() - t0).count(), done, lazy.layers());
  }
  for (int tick = 1; !stop.load(); ++tick) {
    std::this_thread::sleep_for(milliseconds(100));
    if (tick % 20 == 0) lazy.save_access_lists();
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace layer;
  fuse::MountOptions opts;
  bool foreground = false, debug = false, single = false;
  std::string mountpoint;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (a == "-V" || a == "--version") {
        std::printf("layerfs 0.1.0 (libfuse %s; FUSE passthrough through %s)\n", fuse_pkgversion(),
                    fuse::Passthrough::native() ? "libfuse's API" : "a custom io");
        return 0;
      } else if (a == "-f") {
        foreground = true;
      } else if (a == "-d" || a == "--debug") {
        debug = foreground = true;
      } else if (a == "-s") {
        single = true;
      } else if (a == "-o") {
        if (i + 1 >= argc) return usage_error("option '-o' needs an argument");
        opts.parse(argv[++i]);
      } else if (a.rfind("-o", 0) == 0) {
        opts.parse(a.substr(2));
      } else if (!a.empty() && a[0] == '-') {
        return usage_error("unknown option '" + a + "'");
      } else if (mountpoint.empty()) {
        mountpoint = a;
      } else {
        return usage_error("unexpected argument '" + a + "' (one mount point only)");
      }
    }
    if (mountpoint.empty()) return usage_error("no mount point given");
    opts.validate();
  } catch (const Error& e) {
    return usage_error(e.line());
  }
  if (!opts.threaded) single = true;
  if (opts.debug) debug = true;  // logs every request; still daemonizes

  // Declared before the daemon, which borrows them.
  UniqueFd objects_dir;
  std::unique_ptr<lazy::LazyService> lazy_objects;
  std::unique_ptr<fuse::Daemon> daemon;
  try {
    struct stat st;
    if (::stat(mountpoint.c_str(), &st) != 0)
      throw Error("mount point '" + mountpoint + "'", errno);
    if (!S_ISDIR(st.st_mode)) throw Error("mount point '" + mountpoint + "'", ENOTDIR);
    raise_fd_limit();
    ::umask(0);
    if (opts.lazy) {
      objects_dir = sys::xopen_at(AT_FDCWD, opts.core.datadir, O_RDONLY | O_DIRECTORY, 0,
                                  "datadir '" + opts.core.datadir + "'");
      lazy_objects = fuse::open_lazy_layers(
          opts.core.lowerdirs, objects_dir.get(),
          [](const std::string& line) { fuse::log_error("%s", line.c_str()); });
      if (lazy_objects) opts.core.missing_objects = lazy_objects.get();
    }
    daemon = std::make_unique<fuse::Daemon>(overlay::Overlay::open(opts.core), opts);
    if (!opts.log_file.empty()) fuse::log_open(fuse::LogTarget::File, opts.log_file, debug);
  } catch (const Error& e) {
    std::fprintf(stderr, "layerfs: %s\n", e.line().c_str());
    return 1;
  }

  // libfuse's own options: ours first, the user's after (later ones win).
  std::string fopts = "default_permissions,fsname=layerfs,subtype=layerfs";
  if (::getuid() == 0) fopts += ",allow_other,suid,dev";
  for (const auto& o : opts.fuse_options) fopts += "," + o;
  // The daemon applies the atime rule (FUSE inodes never update atime
  // themselves); noatime is also shown in the mount's options.
  if (opts.core.atime_rule() == overlay::Atime::kNoatime) fopts += ",noatime";
  std::vector<std::string> fargs_s = {argv[0], "-o", fopts};
  if (debug) fargs_s.push_back("-d");
  std::vector<char*> fargv;
  for (auto& s : fargs_s) fargv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fargv.size()), fargv.data());

  fuse_session* se =
      fuse_session_new(&args, &fuse::Daemon::ops(), sizeof(fuse_lowlevel_ops), daemon.get());
  if (!se) {
    std::fprintf(stderr, "layerfs: cannot set up the FUSE session (bad mount option?)\n");
    return 1;
  }
  daemon->set_session(se);
  daemon->uring().set_session(se);
  daemon->hook().set_uring(&daemon->uring());
  int ret = 1;
  if (fuse_set_signal_handlers(se) != 0) {
    std::fprintf(stderr, "layerfs: cannot install signal handlers\n");
  } else {
    const bool usr1_blocked = StatsOnSignal::block();
    if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
      std::fprintf(stderr, "layerfs: cannot mount on '%s'\n", mountpoint.c_str());
    } else {
      // Always: the hook also carries O_TMPFILE opens; passthrough itself is
      // chosen at INIT.
      if (!daemon->hook().install(se))
        std::fprintf(stderr, "layerfs: cannot hook the FUSE channel; %s\n",
                     fuse::Passthrough::native() ? "O_TMPFILE and FUSE over io_uring are off"
                                                 : "passthrough, O_TMPFILE and FUSE over io_uring are off");
      fuse_daemonize(foreground ? 1 : 0);
      if (opts.log_file.empty())
        fuse::log_open(foreground ? fuse::LogTarget::Stderr : fuse::LogTarget::Syslog, "", debug);
      fuse::log_info("mounted on %s", mountpoint.c_str());
      if (daemon->ov().user_xattrs() && !opts.core.userxattr)
        fuse::log_info("overlay markers in user.overlay.* (no CAP_SYS_ADMIN for trusted.* xattrs, now or at an earlier mount of this upper)");
      StatsOnSignal stats_signal(daemon->hook().stats());
      if (usr1_blocked) stats_signal.start();
      daemon->ov().start_background();  // threads only after fuse_daemonize's fork
      std::atomic<bool> stop_fetch{false};
      std::thread background;
      if (opts.core.missing_objects)
        background = std::thread([&] { lazy_background(*lazy_objects, opts, stop_fetch); });
      if (single) {
        ret = fuse_session_loop(se);
      } else {
        fuse_loop_config* cfg = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(cfg, 1);
        fuse_loop_cfg_set_idle_threads(cfg, 16);
        fuse_loop_cfg_set_max_threads(cfg, 64);
        ret = fuse_session_loop_mt(se, cfg);
        fuse_loop_cfg_destroy(cfg);
      }
      // The session is over (umount, or a signal: then unmount now). Let go
      // of the layers and the upper before anything else, so that an umount
      // of the filesystems under them right after ours finds them free. Lazy
      // copy-ups still need them, and are finished first (seldom any left).
      fuse_session_unmount(se);
      stop_fetch.store(true);
      if (background.joinable()) background.join();
      daemon->uring().stop();
      daemon->ov().finish_partials();
      daemon->close_layers();
      if (opts.core.missing_objects) {
        lazy_objects->save_access_lists();
        lazy::FetchStats ls = lazy_objects->stats();
        fuse::log_info("lazy: %llu objects, %llu bytes fetched in %llu requests",
                       static_cast<unsigned long long>(ls.objects),
                       static_cast<unsigned long long>(ls.bytes),
                       static_cast<unsigned long long>(ls.on_demand_requests));
      }
      stats_signal.stop();
      fuse::log_info("%s", daemon->hook().stats().summary().c_str());
      fuse::log_info("unmounted %s; exiting", mountpoint.c_str());
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  daemon.reset();
  return ret == 0 ? 0 : 1;
}
