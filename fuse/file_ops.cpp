// The FUSE request handlers for open files: each decodes the request, calls
// the core's open-file handle (overlay::OpenFile) and replies once. The
// handle hides copy-up and lazy copy-up; this side keeps only the kernel's
// I/O mode (passthrough or page cache).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "handler.hpp"

namespace layer::fuse {

namespace {

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
  overlay::OpenFile& of = *f->core;
  int acc = of.flags() & O_ACCMODE;
  bool write = acc != O_RDONLY || (of.flags() & O_TRUNC);
  auto g = d.pt().acquire(req, of.node(), of.backing_fd(), of.upper(), write, of.has_all_data());
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
      // With strictatime every read must reach the real file.
      fi->keep_cache =
          d.pt().active() || d.opts().core.atime_rule() == overlay::Atime::kStrictatime
              ? 0
              : keep_cache;
      if (fi->flags & O_DIRECT) fi->direct_io = 1;
      break;
  }
  return true;
}

void reply_open(fuse_req_t req, Daemon& d, File* f, fuse_file_info* fi, unsigned keep_cache) {
  if (!set_open_mode(req, d, f, fi, keep_cache)) {
    delete f;
    return reply_err(req, ETXTBSY);
  }
  if (fuse_reply_open(req, fi) != 0) {
    d.pt().release(req, f->core->node(), f->mode);
    delete f;
  }
}

}  // namespace

// With passthrough, the daemon's own fd of a file is the backing file of
// every open of it (see Passthrough::acquire and OpenFile::open).
void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guard(req, "open", [&] {
    Daemon& d = daemon_of(req);
    Node* n = node_of(d, ino);
    int flags = adjust_open_flags(d, fi->flags);
    auto r = overlay::OpenFile::open(d.ov(), n, flags, d.pt().active());
    if (!r) return reply_err(req, r.error());
    auto f = std::make_unique<File>(File{std::move(r).value()});
    if (flags & O_TRUNC)
      if (auto k = kill_suidgid(req, d, n, ino, f->core.get()); !k)
        return reply_err(req, k.error());
    fi->fh = reinterpret_cast<uint64_t>(f.get());
    reply_open(req, d, f.release(), fi, n->shared.load() ? 0 : 1);
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
                                 overlay::OpenFile::create_flags(flags, d.pt().active()),
                                 caller_of(req), &st, &fd);
    if (!r) return reply_err(req, r.error());
    Node* n = r.value();
    auto* f = new File{overlay::OpenFile::created(d.ov(), n, flags, std::move(fd))};
    fi->fh = reinterpret_cast<uint64_t>(f);
    if (!set_open_mode(req, d, f, fi, 1)) {  // cannot happen: a new file has no lower copy
      delete f;
      d.ov().unref(n);
      return reply_err(req, ETXTBSY);
    }
    fuse_entry_param e{};
    e.ino = reinterpret_cast<fuse_ino_t>(n);
    e.attr = st;
    e.attr_timeout = d.timeout();
    e.entry_timeout = d.timeout();
    if (fuse_reply_create(req, &e, fi) != 0) {
      d.pt().release(req, n, f->mode);
      delete f;
      d.ov().unref(n);
    }
  });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  guard(req, "read", [&] {
    overlay::OpenFile& f = *file_of(fi)->core;
    int fd = f.read_fd();
    if (fd < 0) {  // still being copied up: the upper's blocks and the lower's bytes
      std::vector<char> data(size);
      auto r = f.read(data.data(), size, off);
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
    overlay::OpenFile& f = *file_of(fi)->core;
    size_t size = fuse_buf_size(in);
    if (auto k = kill_suidgid(req, d, f.node(), ino, nullptr); !k) return reply_err(req, k.error());
    auto r = f.write(off, size, [&](int fd) {
      fuse_bufvec out = fd_bufvec(size, fd, off);
      return fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
    });
    if (!r) return reply_err(req, r.error());
    fuse_reply_write(req, r.value());
  });
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  guard(req, "flush", [&] { reply_void(req, file_of(fi)->core->flush()); });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  Daemon& d = daemon_of(req);
  File* f = file_of(fi);
  d.pt().release(req, f->core->node(), f->mode);
  delete f;
  fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  guard(req, "fsync", [&] { reply_void(req, file_of(fi)->core->fsync(datasync != 0)); });
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  guard(req, "fallocate", [&] { reply_void(req, file_of(fi)->core->fallocate(mode, off, len)); });
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  guard(req, "lseek", [&] {
    auto r = file_of(fi)->core->lseek(off, whence);
    if (!r) return reply_err(req, r.error());
    fuse_reply_lseek(req, r.value());
  });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t,
                        off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
  guard(req, "copy_file_range", [&] {
    auto r =
        overlay::OpenFile::copy_file_range(*file_of(fi_in)->core, off_in, *file_of(fi_out)->core,
                                           off_out, len, static_cast<unsigned>(flags));
    if (!r) return reply_err(req, r.error());
    fuse_reply_write(req, r.value());
  });
}

}  // namespace layer::fuse
