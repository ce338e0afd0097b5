// Passthrough: the custom io hooks, the reply amendments and the per-node
// mode bookkeeping. The protocol pieces are the kernel's UAPI (7.40); Debian
// bookworm's <linux/fuse.h> predates them, so they are spelled out here.
// With LAYERFS_NATIVE_PASSTHROUGH (libfuse >= 3.17) libfuse does the INIT
// flag, the reply fields and the registration itself.
#include "passthrough.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "log.hpp"
#include "uring.hpp"
#include "util/unique_fd.hpp"

namespace layer::fuse {

namespace {

// From the kernel's include/uapi/linux/fuse.h (7.40).
constexpr uint32_t kOpSetattr = 4;
constexpr uint32_t kOpOpen = 14;
constexpr uint32_t kOpWrite = 16;
constexpr uint32_t kOpInit = 26;
constexpr uint32_t kOpCreate = 35;
constexpr uint32_t kOpTmpfile = 51;              // FUSE_TMPFILE (7.37): a CREATE's body and reply
constexpr uint32_t kInitExt = 1u << 30;          // FUSE_INIT_EXT: flags2 is valid
constexpr uint32_t kInitKillprivV2 = 1u << 28;   // FUSE_HANDLE_KILLPRIV_V2
constexpr uint32_t kFattrFh = 1u << 6;           // FATTR_FH
constexpr uint32_t kFattrLockowner = 1u << 9;    // FATTR_LOCKOWNER
constexpr uint32_t kFattrKillSuidgid = 1u << 11;  // FATTR_KILL_SUIDGID
constexpr uint32_t kWriteKillSuidgid = 1u << 2;   // FUSE_WRITE_KILL_SUIDGID
constexpr uint32_t kOpenKillSuidgid = 1u << 0;    // FUSE_OPEN_KILL_SUIDGID
constexpr uint32_t kInitPassthrough2 = 1u << 5;  // FUSE_PASSTHROUGH (bit 37) in flags2
constexpr uint32_t kFopenPassthrough = 1u << 7;  // FOPEN_PASSTHROUGH
constexpr uint32_t kMaxStackDepth = 1;           // backing files on a plain filesystem
struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned long kIocBackingOpen = _IOW(229, 1, BackingMap);
constexpr unsigned long kIocBackingClose = _IOW(229, 2, uint32_t);

// Byte offsets in the messages (fuse_in_header is 40 bytes; fuse_init_in has
// flags at 12, flags2 at 16; fuse_init_out has flags at 12, flags2 at 32,
// max_stack_depth at 36; fuse_open_out is {fh, open_flags, backing_id}, 16
// bytes; fuse_setattr_in has valid at 0, fuse_open_in open_flags at 4,
// fuse_create_in open_flags at 12, fuse_write_in write_flags at 20).
constexpr size_t kInHeader = 40;
constexpr size_t kOutHeader = 16;
constexpr size_t kOpenOut = 16;

std::atomic<uint32_t> g_kernel_flags{0};
std::atomic<uint32_t> g_kernel_flags2{0};
std::atomic<bool> g_killpriv_v2{false};  // negotiated: the daemon clears set-id bits
thread_local bool t_kill = false;        // the current request asks for it
std::atomic<bool> g_saw_init{false};
std::atomic<bool> g_init_passthrough{false};  // the INIT reply turns passthrough on

enum class Amend { kNone, kInit, kOpen };
struct Pending {
  Amend what = Amend::kNone;
  int backing_id = 0;
};
thread_local Pending t_pending;

uint32_t load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void store32(char* p, uint32_t v) {
  std::memcpy(p, &v, sizeof v);
}

// The kill-set-id request of a WRITE, OPEN, CREATE or SETATTR message.
bool asks_kill(const char* p, size_t n) {
  auto field = [&](size_t off) { return n >= kInHeader + off + 4 ? load32(p + kInHeader + off) : 0; };
  switch (load32(p + 4)) {
    case kOpWrite:
      return field(20) & kWriteKillSuidgid;
    case kOpOpen:
      return field(4) & kOpenKillSuidgid;
    case kOpCreate:
    case kOpTmpfile:
      return field(12) & kOpenKillSuidgid;
    case kOpSetattr: {
      uint32_t valid = field(0);
      return (valid & kFattrKillSuidgid) || (valid & ~(kFattrFh | kFattrLockowner)) == 0;
    }
    default:
      return false;
  }
}

void inspect_request_impl(char* p, size_t r) {
  t_kill = false;
  if (g_killpriv_v2.load(std::memory_order_relaxed)) t_kill = asks_kill(p, r);
  if (load32(p + 4) == kOpTmpfile) {
    // libfuse 3.14 has no tmpfile op: an O_TMPFILE open comes in as a CREATE
    // of the name "/", which no real CREATE can carry (see kTmpfileName).
    store32(p + 4, kOpCreate);
  }
  if (!g_saw_init.load(std::memory_order_relaxed) && r >= kInHeader + 20 &&
      load32(p + 4) == kOpInit) {
    uint32_t flags = load32(p + kInHeader + 12);
    g_kernel_flags.store(flags);
    g_kernel_flags2.store((flags & kInitExt) ? load32(p + kInHeader + 16) : 0);
    g_saw_init.store(true);
  }
}

ssize_t io_read(int fd, void* buf, size_t len, void*) {
  ssize_t r = ::read(fd, buf, len);
  t_kill = false;
  if (r < static_cast<ssize_t>(kInHeader)) return r;
  inspect_request_impl(static_cast<char*>(buf), static_cast<size_t>(r));
  return r;
}

// Rewrites the reply's payload (the iovecs after the header) into `buf` with
// the pending amendment applied; returns false if the reply does not fit.
bool amend(const Pending& a, const struct iovec* iov, int count, char* buf, size_t cap,
           size_t* len) {
  size_t n = 0;
  for (int i = 1; i < count; ++i) {
    if (n + iov[i].iov_len > cap) return false;
    std::memcpy(buf + n, iov[i].iov_base, iov[i].iov_len);
    n += iov[i].iov_len;
  }
  *len = n;
  if (a.what == Amend::kInit) {
    if (n < 40) return false;
    uint32_t flags = load32(buf + 12) | kInitExt;
    uint32_t flags2 = load32(buf + 32);
    if (g_init_passthrough.load()) {
      if (g_kernel_flags.load() & kInitKillprivV2) {
        flags |= kInitKillprivV2;
        g_killpriv_v2.store(true);
      }
      if (!Passthrough::native()) {
        flags2 |= kInitPassthrough2;
        store32(buf + 36, kMaxStackDepth);
      }
    }
    if (Uring* u = uring_instance(); u && u->prepared()) flags2 |= Uring::kInitOverIoUring;
    store32(buf + 12, flags);
    store32(buf + 32, flags2);
    return true;
  }
  if (n < kOpenOut) return false;
  char* open_out = buf + n - kOpenOut;  // an OPEN reply, or the tail of a CREATE reply
  store32(open_out + 8, load32(open_out + 8) | kFopenPassthrough);
  store32(open_out + 12, static_cast<uint32_t>(a.backing_id));
  return true;
}

// A reply to a request served from an io_uring goes back into its ring
// entry, the rest to /dev/fuse.
ssize_t send_reply(int fd, const struct iovec* iov, int count) {
  if (Uring::capture(iov, count)) {
    size_t n = 0;
    for (int i = 0; i < count; ++i) n += iov[i].iov_len;
    return static_cast<ssize_t>(n);
  }
  return ::writev(fd, iov, count);
}

ssize_t io_writev(int fd, struct iovec* iov, int count, void*) {
  Pending a = t_pending;
  t_pending = Pending{};
  if (a.what == Amend::kNone || count < 2 || iov[0].iov_len < kOutHeader)
    return send_reply(fd, iov, count);
  int32_t error;
  std::memcpy(&error, static_cast<const char*>(iov[0].iov_base) + 4, sizeof error);
  if (error != 0) return send_reply(fd, iov, count);
  char buf[512];
  size_t len = 0;
  if (!amend(a, iov, count, buf, sizeof buf, &len)) return send_reply(fd, iov, count);
  struct iovec out[2] = {iov[0], {buf, len}};
  ssize_t r = send_reply(fd, out, 2);
  // The kernel has taken the INIT reply: the rings may register now.
  if (a.what == Amend::kInit && r >= 0)
    if (Uring* u = uring_instance()) u->launch();
  return r;
}

// A new open file description of what `fd` refers to.
UniqueFd reopen(int fd, int flags) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  return UniqueFd(::open(path, flags | O_CLOEXEC));
}

ssize_t io_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                       unsigned int flags, void*) {
  return ::splice(fdin, offin, fdout, offout, len, flags);
}

}  // namespace

void inspect_request(char* msg, size_t len) {
  if (len >= kInHeader) inspect_request_impl(msg, len);
}

uint32_t kernel_init_flags2() {
  return g_kernel_flags2.load();
}

bool Passthrough::install(fuse_session* se) {
  static const fuse_custom_io io = {io_writev, io_read, nullptr, io_splice_send};
  int fd = fuse_session_fd(se);
  if (fd < 0 || fuse_session_custom_io(se, &io, fd) != 0) return false;
  devfd_ = fd;
  installed_ = true;
  return true;
}

bool Passthrough::negotiate(fuse_conn_info* conn, bool wanted) {
#if LAYERFS_NATIVE_PASSTHROUGH
  bool on = wanted && (conn->capable & FUSE_CAP_PASSTHROUGH);
  if (on) {
    conn->want |= FUSE_CAP_PASSTHROUGH;
    conn->max_backing_stack_depth = kMaxStackDepth;
  }
#else
  (void)conn;
  bool on = wanted && installed_ && (g_kernel_flags2.load() & kInitPassthrough2);
#endif
  // The INIT amendment: FUSE_HANDLE_KILLPRIV_V2 with passthrough, before
  // libfuse 3.17 passthrough itself.
  g_init_passthrough.store(on && installed_);
  if (on || (uring_instance() && uring_instance()->prepared())) t_pending = Pending{Amend::kInit, 0};
  active_ = on;
  log_debug("passthrough: %s (kernel %s it; %s)", on ? "on" : "off",
            (g_kernel_flags2.load() & kInitPassthrough2) ? "offers" : "does not offer",
            native() ? "libfuse's API" : "custom io");
  return on;
}

void Passthrough::attach(const Grant& g, fuse_file_info* fi) {
  if (g.mode != Mode::kPassthrough) return;
#if LAYERFS_NATIVE_PASSTHROUGH
  fi->backing_id = g.backing_id;
#else
  (void)fi;
  t_pending = Pending{Amend::kOpen, g.backing_id};
#endif
}

bool Passthrough::kill_suidgid() {
  return t_kill;
}

void Passthrough::disable(int err) {
  if (active_.exchange(false))
    log_info("passthrough: off: the kernel refused a backing file: %s", std::strerror(err));
}

Passthrough::Grant Passthrough::acquire(fuse_req_t req, const void* node, int fd, bool upper,
                                        bool write, bool eligible) {
  std::unique_lock<std::mutex> l(mu_);
  struct stat st;
  bool have_st = ::fstat(fd, &st) == 0;
  // Whether this open can join the node's current passthrough opens (if any).
  auto fits = [&] {
    const State& s = nodes_[node];
    return s.passthrough == 0 || (eligible && have_st && st.st_dev == s.dev && st.st_ino == s.ino &&
                                  (!write || s.writable));
  };
  if (!fits()) {
    // Opens of the lower file, and now its upper copy: the kernel keeps one
    // backing file per inode while any passthrough open exists. Their
    // RELEASE may still be on its way: wait for it, a while.
    cv_.wait_for(l, std::chrono::seconds(1), fits);
    if (!fits()) return {Mode::kBusy, 0};
  }
  State& s = nodes_[node];
  if (s.passthrough > 0) {
    ++s.passthrough;
    return {Mode::kPassthrough, s.backing_id};
  }
  if (active() && eligible && have_st && s.cached == 0) {
    // A fresh open of the same file is the backing file: the open's own
    // flags (O_APPEND, O_DIRECT...) must not apply to every open.
    bool writable = upper;
    // The open's own file serves when its flags are the backing file's (the
    // kernel takes its own reference); else a fresh open of the same file.
    int fl = ::fcntl(fd, F_GETFL);
    bool own = fl >= 0 && (fl & O_ACCMODE) == (writable ? O_RDWR : O_RDONLY) &&
               !(fl & (O_APPEND | O_DIRECT | O_SYNC | O_DSYNC));
    UniqueFd bfd;
    if (!own) {
      bfd = reopen(fd, writable ? O_RDWR : O_RDONLY);
      if (!bfd.valid() && writable) bfd = reopen(fd, O_RDONLY), writable = false;
    }
    int backing = own ? fd : bfd.get();
    int id = -1, err = 0;
    if (backing >= 0 && (writable || !write)) {
#if LAYERFS_NATIVE_PASSTHROUGH
      errno = 0;
      id = fuse_passthrough_open(req, backing);  // 0: refused, errno says why
      if (id <= 0) err = errno;
#else
      (void)req;
      BackingMap map{backing, 0, 0};
      id = ::ioctl(devfd_, kIocBackingOpen, &map);
      if (id < 0) err = errno;
#endif
    }
    if (id > 0) {
      s.passthrough = 1;
      s.backing_id = id;
      s.dev = st.st_dev;
      s.ino = st.st_ino;
      s.writable = writable;
      return {Mode::kPassthrough, id};
    }
    // Not allowed at all (no CAP_SYS_ADMIN, no kernel support): stop trying.
    if (err == EPERM || err == ENOTTY || err == EOPNOTSUPP || err == EINVAL) disable(err);
  }
  ++s.cached;
  return {Mode::kCached, 0};
}

void Passthrough::release(fuse_req_t req, const void* node, Mode mode) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  State& s = it->second;
  switch (mode) {
    case Mode::kPassthrough:
      if (--s.passthrough == 0) {
#if LAYERFS_NATIVE_PASSTHROUGH
        fuse_passthrough_close(req, s.backing_id);
#else
        (void)req;
        uint32_t id = static_cast<uint32_t>(s.backing_id);
        ::ioctl(devfd_, kIocBackingClose, &id);
#endif
        s.backing_id = 0;
        cv_.notify_all();
      }
      break;
    case Mode::kCached:
      --s.cached;
      break;
    case Mode::kBusy:
      break;
  }
  if (s.passthrough == 0 && s.cached == 0) nodes_.erase(it);
}

}  // namespace layer::fuse
