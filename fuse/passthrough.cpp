// Passthrough: the per-node mode bookkeeping and the backing-file
// registration, through libfuse's API (>= 3.17) or the /dev/fuse ioctls.
#include "passthrough.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "fuse_kernel_compat.hpp"
#include "log.hpp"
#include "util/unique_fd.hpp"

namespace layer::fuse {

namespace {

// A new open file description of what `fd` refers to.
UniqueFd reopen(int fd, int flags) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  return UniqueFd(::open(path, flags | O_CLOEXEC));
}

}  // namespace

bool Passthrough::negotiate(fuse_conn_info* conn, bool wanted) {
  const bool offered = hook_.kernel_flags2() & init_flags2_bit(FUSE_PASSTHROUGH);
#if LAYERFS_NATIVE_PASSTHROUGH
  bool on = wanted && (conn->capable & FUSE_CAP_PASSTHROUGH);
  if (on) {
    conn->want |= FUSE_CAP_PASSTHROUGH;
    conn->max_backing_stack_depth = kMaxStackDepth;
  }
#else
  (void)conn;
  bool on = wanted && hook_.installed() && offered;
#endif
  hook_.amend_init(on);
  active_ = on;
  log_debug("passthrough: %s (kernel %s it; %s)", on ? "on" : "off",
            offered ? "offers" : "does not offer", native() ? "libfuse's API" : "custom io");
  return on;
}

void Passthrough::attach(const Grant& g, fuse_file_info* fi) {
  if (g.mode != Mode::kPassthrough) return;
#if LAYERFS_NATIVE_PASSTHROUGH
  fi->backing_id = g.backing_id;
#else
  (void)fi;
  CompatChannelHook::amend_open(g.backing_id);
#endif
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
      fuse_backing_map map{backing, 0, 0};
      id = ::ioctl(hook_.devfd(), FUSE_DEV_IOC_BACKING_OPEN, &map);
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
        ::ioctl(hook_.devfd(), FUSE_DEV_IOC_BACKING_CLOSE, &id);
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
