#include "container_mount.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>

#include "container_state.hpp"
#include "format.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::cli {
namespace {

constexpr auto kMountTimeout = std::chrono::seconds(30);
constexpr auto kExitTimeout = std::chrono::seconds(30);

std::string random_id() {
  unsigned char b[32];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
    if (n < 0 && errno != EINTR) throw_errno("getrandom");
    if (n > 0) got += static_cast<size_t>(n);
  }
  std::string hex;
  char h[3];
  for (unsigned char c : b) {
    std::snprintf(h, sizeof h, "%02x", c);
    hex += h;
  }
  return hex;
}

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&t, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

// A lowerdir/upperdir value: layerfs splits on ":" and "," and groups in quotes unless escaped.
std::string escape_opt(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ':' || c == ',' || c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// What the daemon said before it exited, for an error message: the log's
// last lines (libfuse prints its reason, "fuse: device not found, try
// 'modprobe fuse' first", before layerfs's own "cannot mount") from byte
// `from` on, joined into one line.
std::string daemon_message(int root_fd, const std::string& id, size_t from) {
  constexpr size_t kMaxLines = 4;
  std::string log;
  try {
    log = sys::xread_file(root_fd, store::Layout::container_log(id), 1 << 20, "log");
  } catch (const Error&) {
    return "";
  }
  log.erase(0, std::min(from, log.size()));
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < log.size()) {
    size_t nl = log.find('\n', start);
    std::string line = log.substr(start, nl - start);
    if (!line.empty()) lines.push_back(std::move(line));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  std::string out;
  for (size_t i = lines.size() > kMaxLines ? lines.size() - kMaxLines : 0; i < lines.size(); ++i)
    out += (out.empty() ? "" : "; ") + lines[i];
  return out;
}

// Starts layerfs in the foreground of a new session, its output in the
// container's log, and returns its pid.
pid_t spawn_daemon(const std::vector<std::string>& argv, int log_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::setsid();
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, 0);
      ::dup2(null, 1);
    }
    ::dup2(log_fd, 2);
    ::execvp(args[0], args.data());
    std::fprintf(stderr, "layerfs: cannot run '%s': %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

// The kernel's overlayfs over the image's layers and the store's objects
// (docs/store-format-2.md). Each path is its own lowerdir+= parameter, so
// only a comma needs escaping.
void mount_kernel(const store::Store& st, const store::ContainerRecord& rec) {
  using store::Layout;
  const std::string& dir = rec.mountpoint;
  const std::string& root = st.root();
  auto param = [](const std::string& key, const std::string& path) {
    if (path.find(',') != std::string::npos)
      throw Error("'" + path + "': a comma in a store path cannot be passed to the kernel");
    return key + "=" + path + ",";
  };
  std::string o;
  for (auto it = rec.diff_ids.rbegin(); it != rec.diff_ids.rend(); ++it)
    o += param("lowerdir+", root + "/" + Layout::layer_diff(*it));
  for (const auto& d : rec.diff_ids)
    if (st.is_lazy_layer(d))
      throw Error("layer " + d.str() +
                  " was pulled lazily and is not complete: the kernel cannot fetch its files "
                  "(complete it with 'layerctl pull', or mount without --kernel)");
  o += param("datadir+", root + "/" + Layout::objects_dir());
  if (!rec.read_only) {
    o += param("upperdir", root + "/" + Layout::container_upper(rec.id));
    o += param("workdir", root + "/" + Layout::container_work(rec.id));
  }
  o += "metacopy=on,redirect_dir=on";
  unsigned long flags = rec.read_only ? MS_RDONLY : 0;
  if (!rec.suid) flags |= MS_NOSUID;  // as with the daemon: nosuid, nodev unless asked
  if (!rec.dev) flags |= MS_NODEV;
  if (::mount("overlay", dir.c_str(), "overlay", flags, o.c_str()) != 0)
    throw Error("'" + dir + "': the kernel's overlayfs refused the mount (it needs Linux 6.5+ "
                "with data-only lower layers)", errno);
}

}  // namespace

bool valid_container_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || n[0] == '.' || n[0] == '-') return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return false;
  return true;
}

void check_mount_request(const store::Store& st, const MountRequest& req) {
  if (std::string t = mount_type_at(req.dir); !t.empty())
    throw Error("'" + req.dir + "': already a mount point (" + t + ")");
  auto img = st.find_image(req.image);
  if (!img) throw Error("'" + req.image + "': no such image");
  if (!img->broken.empty())
    throw Error("'" + req.image + "': marked broken by fsck --repair (" + img->broken +
                "); pull it again or remove it with rmi");
  for (const auto& d : img->diff_ids)
    if (!st.has_layer(d)) throw Error("'" + req.image + "': layer " + d.str() + " is missing");
  for (const auto& c : st.containers()) {
    if (!req.name.empty() && c.name == req.name)
      throw Error("'" + req.name + "': a container has that name (" + short_id(c.id) + ")" +
                  (container_state(c) == ContainerState::Stopped
                       ? "; 'layerctl start " + req.name + "' mounts it again"
                       : ""));
    if (c.mountpoint == req.dir && container_state(c) != ContainerState::Stopped)
      throw Error("'" + req.dir + "': container " + short_id(c.id) + " is mounted there");
  }
}

store::ContainerRecord mount_container(store::Store& st, const MountRequest& req) {
  check_mount_request(st, req);
  auto img = st.find_image(req.image);
  const std::string& root = st.root();
  store::ContainerRecord rec;
  rec.id = random_id();
  rec.name = req.name.empty() ? short_id(rec.id) : req.name;
  rec.image = img->ref;
  rec.diff_ids = img->diff_ids;
  rec.mountpoint = req.dir;
  rec.read_only = req.read_only;
  rec.suid = req.suid;
  rec.dev = req.dev;
  rec.created = now_rfc3339();
  if (req.kernel) {
    if (::geteuid() != 0)
      throw Error("'" + req.dir + "': mount --kernel needs root (the kernel reads the store's "
                  "markers in the trusted namespace only for root; use layerfs rootless)");
    rec.engine = store::kEngineKernel;
  }
  try {
    using store::Layout;
    // The record, with the daemon's pid, is written (and made durable: two
    // fsyncs) while the daemon starts; the daemon needs only the directories.
    if (::mkdirat(st.root_fd(), Layout::container_dir(rec.id).c_str(), 0700) != 0)
      throw_errno(root + "/" + Layout::container_dir(rec.id));
    if (!req.read_only) {
      for (const auto& p : {Layout::container_upper(rec.id), Layout::container_work(rec.id)})
        if (::mkdirat(st.root_fd(), p.c_str(), 0755) != 0) throw_errno(root + "/" + p);
    }
    if (req.kernel) st.put_container(rec);
    start_daemon(st, rec, req.fetch, [&] { st.put_container(rec); });
  } catch (...) {
    try {
      st.remove_container(rec.id);
    } catch (const Error&) {
    }
    throw;
  }
  return rec;
}

void start_daemon(store::Store& st, store::ContainerRecord& rec, const LazyFetch& fetch,
                  const std::function<void()>& while_starting) {
  using store::Layout;
  if (rec.engine == store::kEngineKernel) return mount_kernel(st, rec);
  const std::string& dir = rec.mountpoint;
  const std::string& root = st.root();
  const int rfd = st.root_fd();
  struct stat sb {};
  pid_t pid = -1;
  try {
    std::string lower;
    for (auto it = rec.diff_ids.rbegin(); it != rec.diff_ids.rend(); ++it)
      lower += (lower.empty() ? "" : ":") + escape_opt(root + "/" + Layout::layer_diff(*it));
    // Renames of lower directories as redirects: layerctl's commit reads them.
    std::string o = "lowerdir=" + lower + ",redirect_dir=on";
    if (!rec.read_only)
      o += ",upperdir=" + escape_opt(root + "/" + Layout::container_upper(rec.id)) +
           ",workdir=" + escape_opt(root + "/" + Layout::container_work(rec.id));
    else
      o += ",ro";
    // After the daemon's own defaults (suid,dev as root), so these win.
    o += rec.suid ? ",suid" : ",nosuid";
    o += rec.dev ? ",dev" : ",nodev";
    o += ",datadir=" + escape_opt(root + "/" + Layout::objects_dir());
    for (const auto& d : rec.diff_ids)
      if (st.is_lazy_layer(d)) {
        o += ",lazy";  // fetch what lazily pulled layers still lack (pull --lazy)
        if (fetch.background) o += ",lazy_fetch_all";  // complete them, verified
        if (fetch.rate) o += ",lazy_rate=" + std::to_string(*fetch.rate);
        break;
      }
    o += ",fsname=layerfs-" + short_id(rec.id);
    UniqueFd log = sys::xopen_at(rfd, Layout::container_log(rec.id), O_WRONLY | O_CREAT | O_APPEND,
                                 0644, "container log");
    // This start's lines only, for the error message (a restart appends).
    if (::fstat(log.get(), &sb) != 0) throw_errno("container log");
    const auto log_start = static_cast<size_t>(sb.st_size);
    pid = spawn_daemon({layerfs_binary(), "-f", "-o", o, dir}, log.get());
    if (while_starting) {
      rec.pid = pid;
      while_starting();
    }

    // Ready when the mount table shows layerfs at dir and it answers a stat.
    // Polled every 250 us at first: a mount takes a few ms (a coarser poll
    // was most of `layerctl mount`'s time), then every 10 ms.
    auto deadline = std::chrono::steady_clock::now() + kMountTimeout;
    for (int round = 0;; ++round) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        std::string why = daemon_message(rfd, rec.id, log_start);
        throw Error("'" + dir + "': layerfs exited before mounting" +
                    (why.empty() ? "" : ": " + why));
      }
      if (mount_type_at(dir) == "fuse.layerfs" && ::stat(dir.c_str(), &sb) == 0) break;
      if (std::chrono::steady_clock::now() > deadline)
        throw Error("'" + dir + "': layerfs did not answer within 30 s");
      std::this_thread::sleep_for(std::chrono::microseconds(round < 800 ? 250 : 10000));
    }
    if (!while_starting) {
      rec.pid = pid;
      st.put_container(rec, store::Store::Publish::kAtomic);  // a crash ends the daemon too
    }
  } catch (...) {
    if (pid > 0) {
      if (mount_type_at(dir) == "fuse.layerfs") ::umount2(dir.c_str(), MNT_DETACH);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    throw;
  }
}

void unmount_container(store::Store& st, store::ContainerRecord& rec) {
  const std::string& mp = rec.mountpoint;
  if (rec.engine == store::kEngineKernel) {
    if (mount_type_at(mp) == "overlay" && ::umount2(mp.c_str(), 0) != 0)
      throw Error("unmount '" + mp + "'", errno);
    return;
  }
  const bool alive = daemon_alive(rec.pid, mp);
  // Its exit wakes a poll on a pidfd (taken while it is known to be the
  // daemon), instead of a check every 10 ms.
  UniqueFd pidfd(alive ? static_cast<int>(::syscall(SYS_pidfd_open, rec.pid, 0)) : -1);
  // Unmount every layerfs mount stacked at mp (normally one).
  while (mount_type_at(mp) == "fuse.layerfs") {
    if (::umount2(mp.c_str(), 0) == 0) continue;
    int err = errno;
    if (err == EBUSY && alive) throw Error("'" + mp + "'", EBUSY);
    // A dead daemon's mount (ENOTCONN for every access) or a busy one
    // whose daemon is gone: detach it lazily.
    if (::umount2(mp.c_str(), MNT_DETACH) != 0) throw Error("unmount '" + mp + "'", errno);
  }
  auto deadline = std::chrono::steady_clock::now() + kExitTimeout;
  while (daemon_alive(rec.pid, mp)) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(rec.pid, SIGKILL);
      throw Error("'" + mp + "': layerfs (pid " + std::to_string(rec.pid) +
                  ") did not exit after the unmount; killed it");
    }
    if (pidfd.valid()) {
      struct pollfd pfd {pidfd.get(), POLLIN, 0};
      ::poll(&pfd, 1, 100);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  rec.pid = 0;
  st.put_container(rec, store::Store::Publish::kAtomic);
}

void discard_container(store::Store& st, const store::ContainerRecord& rec) noexcept {
  std::string type = mount_type_at(rec.mountpoint);
  if (type == "fuse.layerfs" || (rec.engine == store::kEngineKernel && type == "overlay"))
    ::umount2(rec.mountpoint.c_str(), MNT_DETACH);
  if (rec.pid > 0 && daemon_alive(rec.pid, rec.mountpoint)) {
    ::kill(rec.pid, SIGKILL);
    ::waitpid(rec.pid, nullptr, 0);
  }
  try {
    st.remove_container(rec.id);
  } catch (const std::exception&) {
  }
}

}  // namespace layer::cli
