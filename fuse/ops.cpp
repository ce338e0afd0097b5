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

#include "handler.hpp"

namespace layer::fuse {

namespace {

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
  if (d->opts().acl && d->opts().xattrs) {
    want(FUSE_CAP_POSIX_ACL);
    // The mode of a create, mkdir or mknod arrives without the umask (which
    // comes beside it): a parent's default ACL wins over the umask.
    want(FUSE_CAP_DONT_MASK);
  }
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
    File* f = (fi && !n->is_dir()) ? file_of(fi) : nullptr;
    struct stat st;
    Result<void> r = f ? f->core->getattr(&st) : d.ov().getattr(n, -1, &st);
    if (!r) return reply_err(req, r.error());
    fuse_reply_attr(req, &st, attr_timeout(d, n));
  });
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
    File* f = (fi && !n->is_dir()) ? file_of(fi) : nullptr;
    Result<void> r = f ? f->core->setattr(a, caller_of(req), &st)
                       : d.ov().setattr(n, -1, a, caller_of(req), &st);
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
    // The new name is a node of its own: the source's cached link count is
    // stale now. Dropped before the reply, so that no stat after link(2)
    // returns sees the old count; only attributes are dropped, which takes
    // no inode lock (the kernel holds the source's during the LINK).
    if (r.ok() && d.session()) fuse_lowlevel_notify_inval_inode(d.session(), ino, -1, 0);
    reply_node(req, d, std::move(r), st);
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
    // READDIRPLUS resolves every entry: a file's attributes cost a LOOKUP
    // round trip each when a stat-heavy reader (ls -l, after a find has
    // filled the kernel's cache of the listing) gets to it, while resolving
    // it here costs a stat in the upper and one in its layer. Not a file the
    // kernel holds already: an entry with attributes makes it drop the
    // file's cached ACLs, which a reader then asks for again.
    if (!plus || (ent.type != DT_DIR && d.ov().has_node(n, ent.name))) {
      e.attr.st_ino = ent.ino;
      e.attr.st_mode = static_cast<mode_t>(DTTOIF(ent.type));
      if (!add(ent.name.c_str(), e.attr, &e, next)) break;
      continue;
    }
    struct stat st;
    auto found = d.ov().lookup_listed(n, ent, &st);
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
    if (!d.ov().config().fsync || !d.ov().writable()) return reply_err(req, 0);
    auto r = d.ov().fsync_dir(node_of(d, ino), datasync != 0);
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

// noxattrs=1: ENOSYS, as fuse-overlayfs answers; the kernel then sends no
// more of that kind of request and gives programs EOPNOTSUPP.
bool no_xattrs(fuse_req_t req, Daemon& d) {
  if (d.opts().xattrs) return false;
  reply_err(req, ENOSYS);
  return true;
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  guard(req, "setxattr", [&] {
    Daemon& d = daemon_of(req);
    if (no_xattrs(req, d)) return;
    reply_void(req, d.ov().setxattr(node_of(d, ino), name, value, size, flags));
  });
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guard(req, "getxattr", [&] {
    Daemon& d = daemon_of(req);
    if (no_xattrs(req, d)) return;
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
    if (no_xattrs(req, d)) return;
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
    if (no_xattrs(req, d)) return;
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
