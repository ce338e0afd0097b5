// Helpers shared by the FUSE request handlers (ops.cpp, file_ops.cpp):
// decoding a request's node, file and caller, the catch-all around each
// handler, and the reply helpers, one per reply kind. No state of their own.
#pragma once

#include <memory>
#include <new>

#include "daemon.hpp"
#include "log.hpp"
#include "overlay/open_file.hpp"

namespace layer::fuse {

using overlay::Node;
using overlay::Overlay;

// An open file as the daemon holds it: the core's handle and how the kernel
// does its I/O.
struct File {
  std::unique_ptr<overlay::OpenFile> core;
  Passthrough::Mode mode = Passthrough::Mode::kCached;
};

inline File* file_of(fuse_file_info* fi) {
  return reinterpret_cast<File*>(fi->fh);
}

inline Daemon& daemon_of(fuse_req_t req) {
  return *static_cast<Daemon*>(fuse_req_userdata(req));
}

inline Node* node_of(Daemon& d, fuse_ino_t ino) {
  return ino == FUSE_ROOT_ID ? d.ov().root() : reinterpret_cast<Node*>(ino);
}

inline overlay::Caller caller_of(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  return overlay::Caller{c->uid, c->gid, c->umask};
}

// The catch-all: no exception ever unwinds into libfuse.
template <typename F>
inline void guard(fuse_req_t req, const char* op, F&& f) {
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
inline fuse_bufvec fd_bufvec(size_t size, int fd, off_t pos) {
  fuse_bufvec v{};
  v.count = 1;
  v.buf[0].size = size;
  v.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  v.buf[0].fd = fd;
  v.buf[0].pos = pos;
  return v;
}

// Reply helpers, one per reply kind.
inline void reply_err(fuse_req_t req, int err) {
  fuse_reply_err(req, err);
}

// Hard-linked files are several nodes for one inode: their attributes are
// not cached, so a change through one name shows through the others.
inline double attr_timeout(Daemon& d, Node* n) {
  return n->shared.load() ? 0.0 : d.timeout();
}

inline void reply_entry(fuse_req_t req, Daemon& d, Node* n, const struct stat& st) {
  fuse_entry_param e{};
  e.ino = reinterpret_cast<fuse_ino_t>(n);
  e.attr = st;
  e.attr_timeout = attr_timeout(d, n);
  e.entry_timeout = d.timeout();
  if (fuse_reply_entry(req, &e) != 0) d.ov().unref(n);  // the kernel did not take it
}

inline void reply_negative(fuse_req_t req, Daemon& d) {
  fuse_entry_param e{};
  e.entry_timeout = d.timeout();
  fuse_reply_entry(req, &e);
}

inline void reply_node(fuse_req_t req, Daemon& d, Result<Node*> r, const struct stat& st) {
  if (!r) return reply_err(req, r.error());
  reply_entry(req, d, r.value(), st);
}

inline void reply_void(fuse_req_t req, const Result<void>& r) {
  fuse_reply_err(req, r.ok() ? 0 : r.error());
}

// ---------------------------------------------------------------- set-id bits

// Whether the caller of `req` is in group `gid` (its own or a supplementary).
inline bool caller_in_group(fuse_req_t req, gid_t gid) {
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
inline bool add_kill_suidgid(fuse_req_t req, Daemon& d, Node* n, overlay::SetAttr& a) {
  if (!CompatChannelHook::kill_suidgid() || n->type != S_IFREG || (a.valid & a.kMode))
    return false;
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
// `f`: the open file of an OPEN (null for a WRITE).
inline Result<void> kill_suidgid(fuse_req_t req, Daemon& d, Node* n, fuse_ino_t ino,
                                 overlay::OpenFile* f) {
  overlay::SetAttr a;
  if (!add_kill_suidgid(req, d, n, a)) return {};
  struct stat st;
  auto r = f ? f->setattr(a, caller_of(req), &st) : d.ov().setattr(n, -1, a, caller_of(req), &st);
  if (r && d.session()) fuse_lowlevel_notify_inval_inode(d.session(), ino, -1, 0);
  return r;
}

// The request handlers for open files (file_ops.cpp).
void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
void op_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi);
void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                  fuse_file_info* fi);
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);
void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                        fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                        int flags);

}  // namespace layer::fuse
