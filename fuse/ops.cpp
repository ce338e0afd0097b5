// The low-level FUSE operations table of layerfs (after libfuse's
// example/passthrough_hp.cc): a handler decodes, calls the overlay core and
// replies once.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>

#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "daemon.hpp"
#include "log.hpp"

namespace layer::fuse {

using overlay::Node;
using overlay::Overlay;

namespace {

// An open file. `lower` files are read-only opens of a lower layer's file;
// if the node is copied up meanwhile, reads switch to the upper copy.
struct File {
  Node* node;
  int flags;
  std::mutex mu;  // guards fd and lower
  UniqueFd fd;
  bool lower;
  Passthrough::Mode mode = Passthrough::Mode::kCached;
  std::shared_ptr<overlay::Partial> writer;  // a lazy copy-up this open may write
};

Daemon& daemon_of(fuse_req_t req) {
  return *static_cast<Daemon*>(fuse_req_userdata(req));
}

Node* node_of(Daemon& d, fuse_ino_t ino) {
  return ino == FUSE_ROOT_ID ? d.ov().root() : reinterpret_cast<Node*>(ino);
}

File* file_of(fuse_file_info* fi) {
  return reinterpret_cast<File*>(fi->fh);
}

overlay::Caller caller_of(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return overlay::Caller{c->uid, c->gid, c->umask};
}

// The catch-all: no exception ever unwinds into libfuse.
template <typename F>
void guard(fuse_req_t req, const char* op, F&& f) {
  try {
    f();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    log_error("%s: internal error: %s", op, e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    log_error("%s: internal error", op);
    fuse_reply_err(req, EIO);
  }
}

// FUSE_BUFVEC_INIT is a C compound literal; this is the same, in C++.
fuse_bufvec fd_bufvec(size_t size, int fd, off_t pos) {
  fuse_bufvec v{};
  v.count = 1;
  v.buf[0].size = size;
  v.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  v.buf[0].fd = fd;
  v.buf[0].pos = pos;
  return v;
}

// Reply helpers, one per reply kind.
void reply_err(fuse_req_t req, int err) {
  fuse_reply_err(req, err);
}

// Hard-linked files are several nodes for one inode: their attributes are
// not cached, so a change through one name shows through the others.
double attr_timeout(Daemon& d, Node* n) {
  return n->shared.load() ? 0.0 : d.timeout();
}

void reply_entry(fuse_req_t req, Daemon& d, Node* n, const struct stat& st) {
  fuse_entry_param e{};
  e.ino = reinterpret_cast<fuse_ino_t>(n);
  e.attr = st;
  e.attr_timeout = attr_timeout(d, n);
  e.entry_timeout = d.timeout();
  if (fuse_reply_entry(req, &e) != 0) d.ov().unref(n);  // the kernel did not take it
}

void reply_negative(fuse_req_t req, Daemon& d) {
  fuse_entry_param e{};
  e.entry_timeout = d.timeout();
  fuse_reply_entry(req, &e);
}

void reply_node(fuse_req_t req, Daemon& d, Result<Node*> r, const struct stat& st) {
  if (!r) return reply_err(req, r.error());
  reply_entry(req, d, r.value(), st);
}

void reply_void(fuse_req_t req, const Result<void>& r) {
  fuse_reply_err(req, r.ok() ? 0 : r.error());
}

// ---------------------------------------------------------------- lifecycle

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* d = static_cast<Daemon*>(userdata);
  auto want = [&](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  // Replies to requests from an io_uring go into its buffers, not through a
  // pipe to /dev/fuse.
  if (!d->uring().prepare(d->opts().uring, d->hook().kernel_flags2(), conn->max_write)) {
    want(FUSE_CAP_SPLICE_WRITE);
    want(FUSE_CAP_SPLICE_MOVE);
  }
  want(FUSE_CAP_SPLICE_READ);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_ASYNC_DIO);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  if (d->opts().acl) want(FUSE_CAP_POSIX_ACL);
  conn->time_gran = 1;
  // Writing as root does not clear set-id bits: let the kernel do it.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // Passthrough and the writeback cache exclude each other: asking for
  // writeback=1 turns passthrough off.
  if (d->pt().negotiate(conn, d->opts().passthrough && !d->opts().writeback)) return;
  if (d->opts().writeback && d->ov().writable() && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    d->set_writeback(true);
  }
}

// ---------------------------------------------------------------- names

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guard(req, "lookup", [&] {
    Daemon& d = daemon_of(req);
    struct stat st;
    auto r = d.ov().lookup(node_of(d, parent), name, &st);
    if (!r && r.error() == ENOENT) return reply_negative(req, d);
    reply_node(req, d, r, st);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Daemon& d = daemon_of(req);
  if (ino != FUSE_ROOT_ID) d.ov().unref(node_of(d, ino), nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Daemon& d = daemon_of(req);
  for (size_t i = 0; i < count; ++i)
    if (forgets[i].ino != FUSE_ROOT_ID)
      d.ov().unref(node_of(d, forgets[i].ino), forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guard(req, "getattr", [&] {
    Daemon& d = daemon_of(req);
    Node* n = node_of(d, ino);
    int fd = -1;
    File* f = nullptr;
    if (fi && !n->is_dir()) f = file_of(fi);
    struct stat st;
    Result<void> r;
    if (f) {
      std::lock_guard<std::mutex> g(f->mu);
      if (!f->lower) fd = f->fd.get();
      r = d.ov().getattr(n, fd, &st);
    } else {
      r = d.ov().getattr(n, -1, &st);
    }
    if (!r) return reply_err(req, r.error());
    fuse_reply_attr(req, &st, attr_timeout(d, n));
  });
}

// Whether the caller of `req` is in group `gid` (its own or a supplementary).
bool caller_in_group(fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  gid_t groups[256];
  int n = fuse_req_getgroups(req, 256, groups);
  for (int i = 0; i < n && i < 256; ++i)
    if (groups[i] == gid) return true;
  return false;
}

// FUSE_HANDLE_KILLPRIV_V2 (see CompatChannelHook::kill_suidgid): when the kernel
// asks, adds to `a` the mode without set-user-id, and without set-group-id
// if the file is group-executable or the caller is not in its group: the
// VFS's rule (setattr_should_drop_sgid); the kernel has checked the
// caller's CAP_FSETID already. False: nothing to clear.
bool add_kill_suidgid(fuse_req_t req, Daemon& d, Node* n, overlay::SetAttr& a) {
  if (!CompatChannelHook::kill_suidgid() || n->type != S_IFREG || (a.valid & a.kMode)) return false;
  struct stat st;
  if (!d.ov().getattr(n, -1, &st)) return false;
  mode_t m = st.st_mode & 07777;
  mode_t k = m & ~S_ISUID;
  if ((m & S_IXGRP) || ((m & S_ISGID) && !caller_in_group(req, st.st_gid))) k &= ~S_ISGID;
  if (k == m) return false;
  a.valid |= a.kMode;
  a.mode = k;
  return true;
}

// The same for an OPEN with O_TRUNC or a WRITE, whose own change the daemon
// makes as root, which keeps the bits; the kernel's cached mode is dropped.
Result<void> kill_suidgid(fuse_req_t req, Daemon& d, Node* n, fuse_ino_t ino, int fd) {
  overlay::SetAttr a;
  if (!add_kill_suidgid(req, d, n, a)) return {};
  struct stat st;
  auto r = d.ov().setattr(n, fd, a, caller_of(req), &st);
  if (r && d.session()) fuse_lowlevel_notify_inval_inode(d.session(), ino, -1, 0);
  return r;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  guard(req, "setattr", [&] {
    Daemon& d = daemon_of(req);
    Node* n = node_of(d, ino);
    overlay::SetAttr a;
    if (to_set & FUSE_SET_ATTR_MODE) a.valid |= a.kMode, a.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) a.valid |= a.kUid, a.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) a.valid |= a.kGid, a.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) a.valid |= a.kSize, a.size = attr->st_size;
    if (to_set & FUSE_SET_ATTR_ATIME) a.valid |= a.kAtime, a.atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) a.valid |= a.kAtime, a.atime = {0, UTIME_NOW};
    if (to_set & FUSE_SET_ATTR_MTIME) a.valid |= a.kMtime, a.mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) a.valid |= a.kMtime, a.mtime = {0, UTIME_NOW};
    add_kill_suidgid(req, d, n, a);
    struct stat st;
    Result<void> r;
    File* f = (fi && !n->is_dir()) ? file_of(fi) : nullptr;
    if (f) {
      std::lock_guard<std::mutex> g(f->mu);
      r = d.ov().setattr(n, f->lower ? -1 : f->fd.get(), a, caller_of(req), &st);
    } else {
      r = d.ov().setattr(n, -1, a, caller_of(req), &st);
    }
    if (!r) return reply_err(req, r.error());
    fuse_reply_attr(req, &st, attr_timeout(d, n));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guard(req, "readlink", [&] {
    Daemon& d = daemon_of(req);
    auto r = d.ov().readlink(node_of(d, ino));
    if (!r) return reply_err(req, r.error());
    fuse_reply_readlink(req, r.value().c_str());
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  guard(req, "mknod", [&] {
    Daemon& d = daemon_of(req);
    struct stat st;
    reply_node(req, d, d.ov().mknod(node_of(d, parent), name, mode, rdev, caller_of(req), &st), st);
  });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  guard(req, "mkdir", [&] {
    Daemon& d = daemon_of(req);
    struct stat st;
    reply_node(req, d, d.ov().mkdir(node_of(d, parent), name, mode, caller_of(req), &st), st);
  });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  guard(req, "symlink", [&] {
    Daemon& d = daemon_of(req);
    struct stat st;
    reply_node(req, d, d.ov().symlink(node_of(d, parent), name, target, caller_of(req), &st), st);
  });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  guard(req, "link", [&] {
    Daemon& d = daemon_of(req);
    struct stat st;
    Node* src = node_of(d, ino);
    auto r = d.ov().link(src, node_of(d, parent), name, &st);
    bool ok = r.ok();
    reply_node(req, d, std::move(r), st);
    // The new name is a node of its own: the source's cached link count is
    // stale now. (Only attributes are dropped, which takes no inode lock.)
    if (ok && d.session()) fuse_lowlevel_notify_inval_inode(d.session(), ino, -1, 0);
  });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guard(req, "unlink", [&] {
    Daemon& d = daemon_of(req);
    reply_void(req, d.ov().unlink(node_of(d, parent), name));
  });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guard(req, "rmdir", [&] {
    Daemon& d = daemon_of(req);
    reply_void(req, d.ov().rmdir(node_of(d, parent), name));
  });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
               const char* newname, unsigned int flags) {
  guard(req, "rename", [&] {
    Daemon& d = daemon_of(req);
    reply_void(req, d.ov().rename(node_of(d, parent), name, node_of(d, newparent), newname, flags));
  });
}

// ---------------------------------------------------------------- files

int adjust_open_flags(Daemon& d, int flags) {
  if (d.writeback()) {
    // The kernel reads through write-only files to fill its cache, and it
    // handles O_APPEND itself.
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags;
}

// Chooses how the kernel does I/O on a new open file (passthrough to the real
// file, or its own page cache) and arranges the reply's flags. False: the
// open conflicts with passthrough opens of the file's lower copy (ETXTBSY).
bool set_open_mode(fuse_req_t req, Daemon& d, File* f, fuse_file_info* fi, unsigned keep_cache) {
  int acc = f->flags & O_ACCMODE;
  bool write = acc != O_RDONLY || (f->flags & O_TRUNC);
  bool eligible = !d.ov().unfilled_of(f->node);
  auto g = d.pt().acquire(req, f->node, f->fd.get(), !f->lower, write, eligible);
  f->mode = g.mode;
  // Nothing to do at close: no FLUSH round trip.
  fi->noflush = 1;
  switch (g.mode) {
    case Passthrough::Mode::kPassthrough:
      Passthrough::attach(g, fi);
      break;
    case Passthrough::Mode::kBusy:
      return false;
    case Passthrough::Mode::kCached:
      // Lower layers never change and the upper changes only through us,
      // but passthrough writes bypass this inode's page cache.
      fi->keep_cache = d.pt().active() ? 0 : keep_cache;
      if (fi->flags & O_DIRECT) fi->direct_io = 1;
      break;
  }
  return true;
}

// The end of an open file: its references on the node and a lazy copy-up.
void forget_file(Daemon& d, File* f) {
  if (f->writer) d.ov().drop_writer(f->writer);
  d.ov().unref(f->node);
  delete f;
}

void reply_open(fuse_req_t req, Daemon& d, File* f, fuse_file_info* fi, unsigned keep_cache) {
  if (!set_open_mode(req, d, f, fi, keep_cache)) {
    forget_file(d, f);
    return reply_err(req, ETXTBSY);
  }
  if (fuse_reply_open(req, fi) != 0) {
    d.pt().release(req, f->node, f->mode);
    forget_file(d, f);
  }
}

// With passthrough, the daemon's own fd of an upper file is the backing file
// when it is opened read-write (see Passthrough::acquire); else every open
// pays for a second open of the file through /proc. The kernel still
// enforces the caller's access mode on its side. `fresh`: a file being
// created (no other opener, nothing to copy up).
int backing_flags(Daemon& d, Node* n, int flags, bool fresh) {
  if (!d.pt().active() || (flags & O_ACCMODE) == O_RDWR ||
      (flags & (O_APPEND | O_DIRECT | O_SYNC | O_DSYNC | O_TRUNC | O_PATH)))
    return flags;
  if (!fresh && (n->layer.load() != overlay::kUpper || d.ov().unfilled_of(n))) return flags;
  return (flags & ~O_ACCMODE) | O_RDWR;
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guard(req, "open", [&] {
    Daemon& d = daemon_of(req);
    Node* n = node_of(d, ino);
    int flags = adjust_open_flags(d, fi->flags);
    // A file still being copied up lazily gets the rest of its data first
    // (its fsync is left to the background), so that this open can go
    // straight to the upper file.
    if (d.pt().active())
      if (auto p = d.ov().unfilled_of(n))
        if (auto w = d.ov().fill(*p); !w) return reply_err(req, w.error());
    const int bflags = backing_flags(d, n, flags, false);
    auto r = d.ov().open_file(n, bflags);
    if (!r && bflags != flags && r.error() != ENOENT)  // read-write refused: as asked
      r = d.ov().open_file(n, flags);
    if (!r) return reply_err(req, r.error());
    if (flags & O_TRUNC)
      if (auto k = kill_suidgid(req, d, n, ino, r->fd.get()); !k) return reply_err(req, k.error());
    auto* f = new File{n, flags, {}, std::move(r->fd), r->lower};
    d.ov().ref(n);
    if ((flags & O_ACCMODE) != O_RDONLY)
      if ((f->writer = d.ov().partial_of(n))) d.ov().add_writer(*f->writer);
    fi->fh = reinterpret_cast<uint64_t>(f);
    reply_open(req, d, f, fi, n->shared.load() ? 0 : 1);
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  guard(req, "create", [&] {
    Daemon& d = daemon_of(req);
    int flags = adjust_open_flags(d, fi->flags);
    struct stat st;
    UniqueFd fd;
    auto r = std::strcmp(name, kTmpfileName) == 0
                 ? d.ov().tmpfile(node_of(d, parent), mode, flags, caller_of(req), &st, &fd)
                 : d.ov().create(node_of(d, parent), name, mode,
                                 backing_flags(d, nullptr, flags, true), caller_of(req), &st, &fd);
    if (!r) return reply_err(req, r.error());
    Node* n = r.value();
    auto* f = new File{n, flags, {}, std::move(fd), false};
    d.ov().ref(n);
    fi->fh = reinterpret_cast<uint64_t>(f);
    if (!set_open_mode(req, d, f, fi, 1)) {  // cannot happen: a new file has no lower copy
      d.ov().unref(n, 2);
      delete f;
      return reply_err(req, ETXTBSY);
    }
    fuse_entry_param e{};
    e.ino = reinterpret_cast<fuse_ino_t>(n);
    e.attr = st;
    e.attr_timeout = d.timeout();
    e.entry_timeout = d.timeout();
    if (fuse_reply_create(req, &e, fi) != 0) {
      d.pt().release(req, n, f->mode);
      d.ov().unref(n, 2);
      delete f;
    }
  });
}

// Operations that need all of a file's data in the upper file fill a lazy
// copy-up first; those that can make holes in it also wait for it to be
// complete (a crash would fill the holes from the lower again).
Result<void> whole(Daemon& d, File* f) {
  if (auto p = d.ov().unfilled_of(f->node)) return d.ov().fill(*p);
  return {};
}
Result<void> complete(Daemon& d, File* f) {
  if (auto p = d.ov().partial_of(f->node)) return d.ov().complete(*p);
  return {};
}

// Returns the fd to read from, switching a lower open to the upper copy
// once the node has been copied up.
int current_fd(Daemon& d, File* f) {
  std::lock_guard<std::mutex> g(f->mu);
  if (f->lower && f->node->layer.load() == overlay::kUpper) {
    auto r = d.ov().reopen_upper(f->node, f->flags & ~O_TRUNC);
    if (r) {
      f->fd = std::move(r).value();
      f->lower = false;
    }
  }
  return f->fd.get();
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  guard(req, "read", [&] {
    Daemon& d = daemon_of(req);
    File* f = file_of(fi);
    int fd = current_fd(d, f);
    if (auto p = d.ov().unfilled_of(f->node)) {
      // Still being copied up: the upper's blocks and the lower's bytes.
      std::vector<char> data(size);
      auto r = d.ov().read_partial(*p, data.data(), size, off);
      if (!r) return reply_err(req, r.error());
      fuse_reply_buf(req, data.data(), r.value());
      return;
    }
    fuse_bufvec buf = fd_bufvec(size, fd, off);
    fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
  });
}

void op_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
  guard(req, "write", [&] {
    Daemon& d = daemon_of(req);
    File* f = file_of(fi);
    size_t size = fuse_buf_size(in);
    if (auto k = kill_suidgid(req, d, f->node, ino, -1); !k) return reply_err(req, k.error());
    fuse_bufvec out = fd_bufvec(size, current_fd(d, f), off);
    std::unique_lock<std::mutex> partial_lock;
    if (auto p = d.ov().unfilled_of(f->node)) {
      auto l = d.ov().begin_write(*p, off, size);
      if (!l) return reply_err(req, l.error());
      partial_lock = std::move(l).value();
    }
    ssize_t r = fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
    if (partial_lock.owns_lock()) partial_lock.unlock();
    if (r < 0) return reply_err(req, static_cast<int>(-r));
    fuse_reply_write(req, static_cast<size_t>(r));
  });
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  guard(req, "flush", [&] {
    Daemon& d = daemon_of(req);
    int fd = ::dup(current_fd(d, file_of(fi)));
    if (fd < 0) return reply_err(req, errno);
    reply_err(req, ::close(fd) == 0 ? 0 : errno);
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Daemon& d = daemon_of(req);
  File* f = file_of(fi);
  Node* n = f->node;
  d.pt().release(req, n, f->mode);
  forget_file(d, f);
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  guard(req, "fsync", [&] {
    Daemon& d = daemon_of(req);
    if (!d.opts().fsync) return reply_err(req, 0);
    int fd = current_fd(d, file_of(fi));
    int r = datasync ? ::fdatasync(fd) : ::fsync(fd);
    reply_err(req, r == 0 ? 0 : errno);
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  guard(req, "fallocate", [&] {
    Daemon& d = daemon_of(req);
    if (auto w = complete(d, file_of(fi)); !w) return reply_err(req, w.error());
    int r = ::fallocate(current_fd(d, file_of(fi)), mode, off, len);
    reply_err(req, r == 0 ? 0 : errno);
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  guard(req, "lseek", [&] {
    Daemon& d = daemon_of(req);
    if (auto w = whole(d, file_of(fi)); !w) return reply_err(req, w.error());
    off_t r = ::lseek(current_fd(d, file_of(fi)), off, whence);
    if (r < 0) return reply_err(req, errno);
    fuse_reply_lseek(req, r);
  });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t,
                        off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
  guard(req, "copy_file_range", [&] {
    Daemon& d = daemon_of(req);
    if (auto w = whole(d, file_of(fi_in)); !w) return reply_err(req, w.error());
    if (auto w = whole(d, file_of(fi_out)); !w) return reply_err(req, w.error());
    int in = current_fd(d, file_of(fi_in));
    int out = current_fd(d, file_of(fi_out));
    ssize_t r = ::copy_file_range(in, &off_in, out, &off_out, len, static_cast<unsigned>(flags));
    if (r < 0) return reply_err(req, errno);
    fuse_reply_write(req, static_cast<size_t>(r));
  });
}

// ---------------------------------------------------------------- directories

// No OPENDIR or RELEASEDIR round trip per opendir(3): the first OPENDIR
// answers ENOSYS, after which the kernel opens directories by itself (with
// FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR). Readdir offsets are name hashes (see
// overlay::Listing), so no per-open snapshot is needed for telldir/seekdir.
void op_opendir(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, ENOSYS);
}

// Offsets: 1 after ".", 2 after "..", then each entry's own offset.
void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Daemon& d = daemon_of(req);
  Node* n = node_of(d, ino);
  auto r = d.ov().list(n);
  if (!r) return reply_err(req, r.error());
  std::shared_ptr<const overlay::Listing> listing = std::move(r).value();
  // Not zeroed: the kernel asks for up to 128 KiB and gets what is used.
  std::unique_ptr<char[]> buf(new char[size]);
  size_t used = 0;
  auto add = [&](const char* name, const struct stat& st, const fuse_entry_param* e,
                 off_t next) -> bool {
    size_t rem = size - used;
    size_t len = plus ? fuse_add_direntry_plus(req, buf.get() + used, rem, name, e, next)
                      : fuse_add_direntry(req, buf.get() + used, rem, name, &st, next);
    if (len > rem) return false;
    used += len;
    return true;
  };
  fuse_entry_param dot{};
  dot.attr.st_mode = S_IFDIR;
  dot.attr.st_ino = n->ino;
  bool full = false;
  for (off_t i = off; i < 2 && !full; ++i) full = !add(i == 0 ? "." : "..", dot.attr, &dot, i + 1);
  const auto& entries = listing->entries;
  auto first = std::upper_bound(entries.begin(), entries.end(), static_cast<uint64_t>(off),
                                [](uint64_t o, const overlay::DirEntry& e) { return o < e.off; });
  for (auto it = first; it != entries.end() && !full; ++it) {
    fuse_entry_param e{};
    const auto& ent = *it;
    const off_t next = static_cast<off_t>(ent.off);
    // READDIRPLUS resolves directories only: a walk (find, ls -R, du of
    // names) descends into them, so the kernel would look each up anyway,
    // while resolving every file would stat it in each layer. A file goes
    // out as name, type and d_ino with node id 0, which the kernel emits
    // without making a dentry; stat-heavy readers (ls -l) look it up.
    if (!plus || (ent.type != DT_DIR && ent.type != DT_UNKNOWN)) {
      e.attr.st_ino = ent.ino;
      e.attr.st_mode = static_cast<mode_t>(DTTOIF(ent.type));
      if (!add(ent.name.c_str(), e.attr, &e, next)) break;
      continue;
    }
    struct stat st;
    auto found = d.ov().lookup(n, ent.name, &st);
    if (!found) {
      if (found.error() == ENOENT) continue;  // removed since the listing
      if (used == 0) return reply_err(req, found.error());
      break;
    }
    e.ino = reinterpret_cast<fuse_ino_t>(found.value());
    e.attr = st;
    e.attr_timeout = attr_timeout(d, found.value());
    e.entry_timeout = d.timeout();
    if (!add(ent.name.c_str(), st, &e, next)) {
      d.ov().unref(found.value());
      break;
    }
  }
  fuse_reply_buf(req, buf.get(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  guard(req, "readdir", [&] { do_readdir(req, ino, size, off, false); });
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  guard(req, "readdirplus", [&] { do_readdir(req, ino, size, off, true); });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  guard(req, "fsyncdir", [&] {
    Daemon& d = daemon_of(req);
    if (!d.opts().fsync || !d.ov().writable()) return reply_err(req, 0);
    Node* n = node_of(d, ino);
    if (n->layer.load() != overlay::kUpper) return reply_err(req, 0);
    auto r = d.ov().fsync_dir(n, datasync != 0);
    reply_void(req, r);
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  guard(req, "statfs", [&] {
    Daemon& d = daemon_of(req);
    auto r = d.ov().statfs();
    if (!r) return reply_err(req, r.error());
    fuse_reply_statfs(req, &r.value());
  });
}

// ---------------------------------------------------------------- xattrs

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  guard(req, "setxattr", [&] {
    Daemon& d = daemon_of(req);
    reply_void(req, d.ov().setxattr(node_of(d, ino), name, value, size, flags));
  });
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guard(req, "getxattr", [&] {
    Daemon& d = daemon_of(req);
    std::vector<char> buf(size);
    auto r = d.ov().getxattr(node_of(d, ino), name, size ? buf.data() : nullptr, size);
    if (!r) return reply_err(req, r.error());
    if (size == 0) return (void)fuse_reply_xattr(req, r.value());
    fuse_reply_buf(req, buf.data(), r.value());
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guard(req, "listxattr", [&] {
    Daemon& d = daemon_of(req);
    std::vector<char> buf(size);
    auto r = d.ov().listxattr(node_of(d, ino), size ? buf.data() : nullptr, size);
    if (!r) return reply_err(req, r.error());
    if (size == 0) return (void)fuse_reply_xattr(req, r.value());
    fuse_reply_buf(req, buf.data(), r.value());
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  guard(req, "removexattr", [&] {
    Daemon& d = daemon_of(req);
    reply_void(req, d.ov().removexattr(node_of(d, ino), name));
  });
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops o{};
  o.init = op_init;
  o.lookup = op_lookup;
  o.forget = op_forget;
  o.forget_multi = op_forget_multi;
  o.getattr = op_getattr;
  o.setattr = op_setattr;
  o.readlink = op_readlink;
  o.mknod = op_mknod;
  o.mkdir = op_mkdir;
  o.symlink = op_symlink;
  o.link = op_link;
  o.unlink = op_unlink;
  o.rmdir = op_rmdir;
  o.rename = op_rename;
  o.open = op_open;
  o.create = op_create;
  o.read = op_read;
  o.write_buf = op_write_buf;
  o.flush = op_flush;
  o.release = op_release;
  o.fsync = op_fsync;
  o.fallocate = op_fallocate;
  o.lseek = op_lseek;
  o.copy_file_range = op_copy_file_range;
  o.opendir = op_opendir;
  o.readdir = op_readdir;
  o.readdirplus = op_readdirplus;
  o.fsyncdir = op_fsyncdir;
  o.statfs = op_statfs;
  o.setxattr = op_setxattr;
  o.getxattr = op_getxattr;
  o.listxattr = op_listxattr;
  o.removexattr = op_removexattr;
  return o;
}

}  // namespace

const fuse_lowlevel_ops& Daemon::ops() {
  static const fuse_lowlevel_ops o = make_ops();
  return o;
}

}  // namespace layer::fuse
