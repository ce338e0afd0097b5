// Overlay: opening files, attribute changes and xattrs. Each change copies
// up what it touches first, then works on the upper object.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "format/overlay_format.hpp"
#include "overlay/overlay.hpp"
#include "store/object_ref.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

// ---------------------------------------------------------------- open, setattr

Result<RealFile> Overlay::open_real(Node* n, int flags) {
  if (n->is_dir()) return Errno{EISDIR};
  bool write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  auto reopen = [flags](int fd) -> Result<RealFile> {
    auto r = sys::open_at(AT_FDCWD, sys::proc_path(fd).c_str(),
                          flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW));
    if (!r) return Errno{r.error()};
    return RealFile{std::move(r).value(), false};  // an upper inode: never stale
  };
  if (n->anon.valid()) return reopen(n->anon.get());
  // A reopen through /proc/PID/fd of a file whose name is gone.
  if (auto kept = orphan_of(n); kept && (!write || n->layer.load() == kUpper))
    return reopen(kept->get());
  if (!write) {
    // Another name was copied up: read that copy, and write nothing.
    auto copy = indexed_copy(n);
    if (!copy) return Errno{copy.error()};
    if (copy->valid()) return reopen(copy->get());
  } else {
    if (!writable()) return Errno{EROFS};
    // O_TRUNC: the data is about to go, copy none of it.
    auto mode = (flags & O_TRUNC) && n->type == S_IFREG ? CopyData::kNone : CopyData::kAll;
    if (auto r = copy_up(n, mode); !r) return Errno{r.error()};
    if (flags & O_TRUNC) {
      if (auto p = lazy_.partial_of(n)) {
        if (auto r = lazy_.cut(*p, 0, false); !r) return Errno{r.error()};
      }
    }
  }
  auto loc = locate(n, !write);  // a metadata-only copy reads from below
  if (!loc) return Errno{loc.error()};
  auto fd = open_in_layer(loc->layer, loc->dirfd, loc->name.c_str(),
                          (flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_NOFOLLOW);
  if (!fd) return Errno{fd.error()};
  if (loc->layer != kUpper && n->type == S_IFREG) {
    // A metadata-only entry's data is in its content object (-o datadir).
    auto data = store::data_of(std::move(fd).value(), datadir_.get(), config_.missing_objects);
    if (!data) return Errno{data.error()};
    return RealFile{std::move(data).value(), true};
  }
  return RealFile{std::move(fd).value(), loc->layer != kUpper};
}

Result<void> Overlay::setattr(Node* n, int fd, const SetAttr& a, const Caller& c, struct stat* st) {
  (void)c;
  if (!writable()) return Errno{EROFS};
  // A change of metadata alone copies no data (the kernel's metacopy).
  CopyData data = CopyData::kMeta;
  if (a.valid & SetAttr::kSize)
    data = a.size == 0 && n->type == S_IFREG ? CopyData::kNone : CopyData::kAll;
  if (auto r = copy_up(n, data); !r) return r;
  // The real object: a directory by its fd, anything else by (dirfd, name).
  auto real = real_of(n);
  if (!real) return Errno{real.error()};
  int dirfd = real->dirfd;
  const char* name = real->name.empty() ? nullptr : real->name.c_str();
  XattrPath path(dirfd, name);  // /proc/self/fd form, usable for every call below
  bool a_size_done = false;
  const char* p = path.path();
  if (owners_.in_xattr(n->type) && (a.valid & (SetAttr::kMode | SetAttr::kUid | SetAttr::kGid))) {
    // Owner and mode change in the xattr only; the real inode keeps its own.
    struct stat cur;
    if ((name ? ::fstatat(dirfd, name, &cur, AT_SYMLINK_NOFOLLOW) : ::fstat(dirfd, &cur)) != 0)
      return last_errno();
    owners_.read_override(path, &cur);
    uid_t uid = (a.valid & SetAttr::kUid) ? owners_.outside_uid(a.uid) : cur.st_uid;
    gid_t gid = (a.valid & SetAttr::kGid) ? owners_.outside_gid(a.gid) : cur.st_gid;
    mode_t mode = (a.valid & SetAttr::kMode) ? a.mode & 07777 : cur.st_mode & 07777;
    // As chown(2): a change of owner drops set-user-ID, and set-group-ID
    // where group execute is set, of a non-directory.
    if (!(a.valid & SetAttr::kMode) && n->type == S_IFREG) {
      mode &= ~S_ISUID;
      if (mode & S_IXGRP) mode &= ~S_ISGID;
    }
    if (auto w = owners_.write_override(dirfd, name, uid, gid, mode); !w) return w;
  } else if (a.valid & SetAttr::kMode) {
    if (n->type == S_IFLNK) return Errno{EOPNOTSUPP};
    if (::chmod(p, a.mode & 07777) != 0) return last_errno();
  }
  if (!owners_.in_xattr(n->type) && (a.valid & (SetAttr::kUid | SetAttr::kGid))) {
    uid_t uid = (a.valid & SetAttr::kUid) ? owners_.outside_uid(a.uid) : static_cast<uid_t>(-1);
    gid_t gid = (a.valid & SetAttr::kGid) ? owners_.outside_gid(a.gid) : static_cast<gid_t>(-1);
    int r = name ? ::fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) : ::chown(p, uid, gid);
    if (r != 0) return last_errno();
  }
  if (a.valid & SetAttr::kSize) {
    if (n->type != S_IFREG) return Errno{n->is_dir() ? EISDIR : EINVAL};
    if (auto p = lazy_.partial_of(n)) {
      // Lower bytes past the new size are not the file's any more, even if
      // it grows again later.
      if (auto r = lazy_.cut(*p, a.size, true); !r) return r;
      a_size_done = true;
    }
  }
  if ((a.valid & SetAttr::kSize) && !a_size_done) {
    if (fd >= 0) {
      if (::ftruncate(fd, a.size) != 0) return last_errno();
    } else {
      auto f = name ? sys::open_at(dirfd, name, O_WRONLY | O_NOFOLLOW)
                    : sys::open_at(AT_FDCWD, p, O_WRONLY);
      if (!f) return Errno{f.error()};
      if (::ftruncate(f.value().get(), a.size) != 0) return last_errno();
    }
  }
  if (a.valid & (SetAttr::kAtime | SetAttr::kMtime)) {
    struct timespec ts[2];
    ts[0] = (a.valid & SetAttr::kAtime) ? a.atime : timespec{0, UTIME_OMIT};
    ts[1] = (a.valid & SetAttr::kMtime) ? a.mtime : timespec{0, UTIME_OMIT};
    int r =
        name ? ::utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) : ::utimensat(AT_FDCWD, p, ts, 0);
    if (r != 0) return last_errno();
  }
  return getattr(n, -1, st);
}

// ---------------------------------------------------------------- xattrs

Result<size_t> Overlay::getxattr(Node* n, const char* name, void* buf, size_t size) {
  std::string_view nm(name);
  std::string real;
  if (upper_.hides(nm)) {
    // An image's own "<prefix>X" is stored escaped (format::escape_xattr_name).
    if (!nm.starts_with(upper_.xattrs().prefix)) return Errno{ENODATA};
    real = format::escape_xattr_name(nm);
    name = real.c_str();
  }
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  ssize_t r = t_path.get(name, buf, size);
  if (r < 0) return last_errno();
  return static_cast<size_t>(r);
}

Result<size_t> Overlay::listxattr(Node* n, char* buf, size_t size) {
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  std::vector<char> raw(1024);
  ssize_t len;
  for (;;) {
    len = t_path.list(raw.data(), raw.size());
    if (len >= 0) break;
    if (errno != ERANGE) return last_errno();
    ssize_t need = t_path.list(nullptr, 0);
    if (need < 0) return last_errno();
    raw.resize(static_cast<size_t>(need) + 256);
  }
  std::string out;
  for (ssize_t off = 0; off < len;) {
    std::string_view nm(raw.data() + off);
    off += static_cast<ssize_t>(nm.size()) + 1;
    if (upper_.escaped(nm)) {
      out += *format::unescape_xattr_name(nm);
      out += '\0';
    } else if (!upper_.hides(nm)) {
      out += nm;
      out += '\0';
    }
  }
  if (size == 0) return out.size();
  if (out.size() > size) return Errno{ERANGE};
  std::memcpy(buf, out.data(), out.size());
  return out.size();
}

Result<void> Overlay::setxattr(Node* n, const char* name, const void* value, size_t size,
                               int flags) {
  if (!writable()) return Errno{EROFS};
  std::string_view nm(name);
  // The overlay's own xattrs cannot be set from inside (as in the kernel).
  if (upper_.hides(nm)) return Errno{EPERM};
  if (auto r = copy_up(n, CopyData::kMeta); !r) return r;
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  if (t_path.set(name, value, size, flags) != 0) return last_errno();
  return {};
}

Result<void> Overlay::removexattr(Node* n, const char* name) {
  if (!writable()) return Errno{EROFS};
  std::string_view nm(name);
  if (upper_.hides(nm)) {
    // Invisible, hence absent, as the kernel answers; one a kernel mount
    // stored escaped stays, as setting them is refused.
    auto g = getxattr(n, name, nullptr, 0);
    return Errno{g ? EPERM : ENODATA};
  }
  if (auto r = copy_up(n, CopyData::kMeta); !r) return r;
  auto t = real_of(n);
  if (!t) return Errno{t.error()};
  XattrPath t_path(t->dirfd, t->name.empty() ? nullptr : t->name.c_str());
  if (t_path.remove(name) != 0) return last_errno();
  return {};
}

}  // namespace layer::overlay
