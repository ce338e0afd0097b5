#include "overlay/copier.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "format/overlay_format.hpp"
#include "overlay/config.hpp"
#include "overlay/lazy_copy.hpp"
#include "overlay/link_index.hpp"
#include "overlay/node_table.hpp"
#include "overlay/resolver.hpp"
#include "overlay/upper_dir.hpp"
#include "store/object_ref.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

namespace {

// Copies src's data extents to dst (holes stay holes), or clones it.
Result<void> copy_data(int src, int dst, off_t size) {
  if (size == 0) return {};
  if (::ioctl(dst, FICLONE, src) == 0) return {};
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      if (errno == EINVAL) {  // no SEEK_DATA: copy everything
        auto r = sys::copy_range(src, dst, pos, size);
        if (!r) return r;
        break;
      }
      return last_errno();
    }
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0) return last_errno();
    auto r = sys::copy_range(src, dst, data, std::min(hole, size));
    if (!r) return r;
    pos = hole;
  }
  if (::ftruncate(dst, size) != 0) return last_errno();
  return {};
}

// Reserves in `upper` (of `size` bytes, all hole) the blocks the background
// fill of a lazy copy-up will write: the lower's data ranges. A full upper
// then fails the copy-up, and with it the write that asked for it, with
// ENOSPC, instead of leaving a file whose fill can never finish. The fill
// finds its work with SEEK_HOLE, so the reservation must still read as holes
// (unwritten extents do on ext4, XFS, btrfs and tmpfs). Returns false when it
// would not (the caller copies the data at once); true when reserved, or when
// the filesystem cannot reserve (EOPNOTSUPP: lazy as before).
Result<bool> reserve_fill(int lower, int upper, off_t size) {
  for (off_t pos = 0; pos < size;) {
    off_t d = ::lseek(lower, pos, SEEK_DATA);
    if (d < 0 || d >= size) break;
    off_t e = ::lseek(lower, d, SEEK_HOLE);
    if (e < 0 || e > size) e = size;
    if (::fallocate(upper, 0, d, e - d) != 0) {
      if (errno == EOPNOTSUPP) return true;
      return last_errno();
    }
    pos = e;
  }
  off_t data = ::lseek(upper, 0, SEEK_DATA);
  return data < 0 || data >= size;
}

}  // namespace

struct Copier::Job {
  Node* n;
  Node* parent;
  const std::string& name;
  std::shared_ptr<const DirStack> pstack;  // keeps ufd and sfd open
  int ufd = -1;                            // the parent's upper directory
  int sfd = -1;                            // the parent's directory in n's layer
  int layer = 0;
  int dfd = -1;        // a regular file's data: the directory in its layer
  int dlayer = 0;      // (a metadata-only lower file's is further down)
  struct stat st {};   // the lower object
  struct stat pst {};  // the upper parent, whose times a copy-up keeps
  bool indexed = false;
  IndexKey key;                             // while indexed
  std::unique_lock<std::mutex> index_lock;  // held while indexed
  std::string tmp;                          // its name in work/
  UniqueFd data;                            // a regular file's work copy
  std::shared_ptr<Partial> partial;         // a lazy copy's state
  bool meta = false;                        // a metadata-only copy (kMeta)
};

Result<void> Copier::copy_up(Node* n, CopyData data) {
  if (n->layer.load() == kUpper) return copy_data_in(n, data);
  if (!upper_.valid()) return Errno{EROFS};
  std::string name;
  Node* p = nodes_.parent_of(n, &name);
  if (!p) return Errno{EIO};
  NodeRef hold(&nodes_, p);
  auto pr = copy_up(p, CopyData::kAll);  // parents first, each with its metadata
  if (!pr) return pr;
  {
    std::lock_guard<std::mutex> g(n->copy_mu);
    if (n->layer.load() != kUpper) {
      // A lower file whose name is gone (fchmod of an open file after unlink):
      // copying it up would bring its name back over the whiteout or the file
      // that replaced it. The kernel's overlayfs fails the same way.
      if (!n->is_dir() && nodes_.unlinked(n)) return Errno{EEXIST};
      // Renames copy up before they move a node, so the name read before
      // taking copy_mu is still this node's name.
      if (auto r = copy_locked(n, p, name, data); !r) return r;
    }
  }
  return copy_data_in(n, data);  // another thread's metadata-only copy
}

Result<void> Copier::copy_locked(Node* n, Node* p, const std::string& name, CopyData data) {
  Job j{n, p, name};
  auto ufd = upper_fd(p, &j.pstack);
  if (!ufd) return Errno{ufd.error()};
  j.ufd = ufd.value();
  j.layer = n->layer.load();
  for (const auto& ld : *j.pstack)
    if (ld.layer == j.layer) j.sfd = ld.fd.get();
  if (j.sfd < 0) return Errno{EIO};
  j.dlayer = n->data_layer.load();
  if (j.dlayer < 0 && data != CopyData::kMeta) return Errno{EIO};  // no data found below
  if (j.dlayer <= 0) j.dlayer = j.layer;
  for (const auto& ld : *j.pstack)
    if (ld.layer == j.dlayer) j.dfd = ld.fd.get();
  if (j.dfd < 0) return Errno{EIO};
  if (::fstatat(j.sfd, name.c_str(), &j.st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  if (::fstat(j.ufd, &j.pst) != 0) return last_errno();

  // A lower file with several names: if another name was copied up already,
  // this one becomes a link to that copy.
  // (A file system without file handles has no index: its names part.)
  if (S_ISREG(j.st.st_mode) && j.st.st_nlink > 1 && index_.valid()) {
    auto k = index_.key_of(n->ino, j.sfd, name.c_str());
    if (!k && k.error() != EOPNOTSUPP) return Errno{k.error()};
    if (k) {
      j.key = std::move(k).value();
      j.indexed = true;
    }
  }
  if (j.indexed) {
    j.index_lock = std::unique_lock<std::mutex>(index_.mu());
    auto l = index_.link_to(j.key, j.ufd, name.c_str());
    if (l) {
      struct timespec pts[2] = {j.pst.st_atim, j.pst.st_mtim};
      ::futimens(j.ufd, pts);
      n->layer = kUpper;
      return {};
    }
    if (l.error() != ENOENT) return l;
  }

  j.tmp = upper_.temp_name();
  if (auto r = make_work_copy(j, data); !r) {
    (void)upper_.remove_in_work(j.tmp.c_str());
    return r;
  }
  if (auto r = copy_metadata(j); !r) {
    (void)upper_.remove_in_work(j.tmp.c_str());
    return r;
  }
  return publish(j);
}

Result<void> Copier::make_work_copy(Job& j, CopyData data) {
  int wfd = upper_.work();
  const char* tn = j.tmp.c_str();
  const char* nm = j.name.c_str();
  switch (j.st.st_mode & S_IFMT) {
    case S_IFDIR:
      if (::mkdirat(wfd, tn, 0700) != 0) return last_errno();
      return {};
    case S_IFREG: {
      if (data == CopyData::kMeta && j.st.st_size > 0 && !j.indexed && j.st.st_nlink == 1) {
        // Metadata only: a sparse file of the lower's size (as the kernel's
        // metacopy and the store's own entries are), marked in copy_metadata.
        auto dst = sys::open_at(wfd, tn, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
        if (!dst) return Errno{dst.error()};
        if (::ftruncate(dst.value().get(), j.st.st_size) != 0) return last_errno();
        j.meta = true;
        return {};
      }
      auto opened = open_in_layer(j.dlayer, j.dfd, nm, O_RDONLY | O_NOFOLLOW);
      if (!opened) return Errno{opened.error()};
      // A content object's data (fetched first if it is a lazy layer's, missing).
      auto src = store::data_of(std::move(opened).value(), datadir_, c_.missing_objects);
      if (!src) return Errno{src.error()};
      auto dst = sys::open_at(wfd, tn, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
      if (!dst) return Errno{dst.error()};
      j.data = std::move(dst).value();
      if (data == CopyData::kNone) return {};
      if (j.st.st_size >= LazyCopy::kMinSize && !j.indexed && lazy_.enabled()) {
        // Big file: only the metadata now; the data follows in the background
        // and is read from the lower file until then.
        if (::ftruncate(j.data.get(), j.st.st_size) != 0) return last_errno();
        auto reserved = reserve_fill(src.value().get(), j.data.get(), j.st.st_size);
        if (!reserved) return Errno{reserved.error()};
        if (!reserved.value())  // no reservation that reads as holes: copy it all now
          return copy_data(src.value().get(), j.data.get(), j.st.st_size);
        j.partial = lazy_.make(std::move(src).value(), j.st.st_size,
                               lazy_marker(j.parent, j.name, j.dlayer, j.st.st_size));
        return {};
      }
      return copy_data(src.value().get(), j.data.get(), j.st.st_size);
    }
    case S_IFLNK: {
      char target[PATH_MAX];
      ssize_t len = ::readlinkat(j.sfd, nm, target, sizeof(target) - 1);
      if (len < 0) return last_errno();
      target[len] = '\0';
      if (::symlinkat(target, wfd, tn) != 0) return last_errno();
      return {};
    }
    default:
      if (::mknodat(wfd, tn, (j.st.st_mode & S_IFMT) | 0600, j.st.st_rdev) != 0)
        return last_errno();
      return {};
  }
}

Result<void> Copier::copy_metadata(Job& j) {
  int wfd = upper_.work();
  const char* tn = j.tmp.c_str();
  const struct stat& st = j.st;
  // Owner before mode (chown clears set-id bits), xattrs after both (chown
  // also drops security.capability), times last.
  if (::fchownat(wfd, tn, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  if (!S_ISLNK(st.st_mode) && ::fchmodat(wfd, tn, st.st_mode & 07777, 0) != 0) return last_errno();
  if (auto r = copy_xattrs(j.sfd, j.name.c_str(), wfd, tn); !r) return r;
  uint64_t origin = j.n->ino;
  if (XattrPath(wfd, tn).set(upper_.xattrs().layerfs_origin.data(), &origin, sizeof(origin), 0) !=
          0 &&
      !S_ISLNK(st.st_mode))
    return last_errno();
  if (j.meta && XattrPath(wfd, tn).set(upper_.xattrs().metacopy.data(), "", 0, 0) != 0)
    return last_errno();
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(wfd, tn, ts, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  // (A partial file needs no fsync: its data is still the lower's, and the
  // marker lets the next mount finish it. A metadata-only copy has no data:
  // the journal orders its xattrs before the rename that publishes it.)
  if (j.data.valid() && c_.fsync && !j.partial) return sys::fsync_fd(j.data.get());
  return {};
}

Result<void> Copier::publish(Job& j) {
  int wfd = upper_.work();
  const char* tn = j.tmp.c_str();
  const char* nm = j.name.c_str();
  auto fail = [&](int err) -> Result<void> {
    (void)upper_.remove_in_work(tn);
    return Errno{err};
  };
  if (j.partial) {
    if (auto r = lazy_.mark(wfd, tn, j.data.get(), *j.partial); !r) return fail(r.error());
  }
  j.data.reset();
  if (::renameat2(wfd, tn, j.ufd, nm, RENAME_NOREPLACE) != 0) {
    int err = errno;
    if (j.partial) lazy_.unmark(*j.partial);
    return fail(err);
  }
  upper_.mark_impure(j.ufd);
  if (j.indexed) {
    index_.record(j.key, j.ufd, nm, j.st.st_nlink);
    j.index_lock.unlock();
  }
  if (j.partial) lazy_.publish(j.n, j.partial);
  // The parent's times are not changed by a copy-up.
  struct timespec pts[2] = {j.pst.st_atim, j.pst.st_mtim};
  ::futimens(j.ufd, pts);

  if (S_ISDIR(j.st.st_mode)) {
    auto fd = sys::open_at(j.ufd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!fd) return Errno{fd.error()};
    std::lock_guard<std::mutex> g(j.n->mu);
    auto stack = std::make_shared<DirStack>();
    stack->push_back(LayerDir{kUpper, std::move(fd).value()});
    for (const auto& ld : *j.n->stack) {
      int dup = ::fcntl(ld.fd.get(), F_DUPFD_CLOEXEC, 0);
      if (dup < 0) return last_errno();
      stack->push_back(LayerDir{ld.layer, UniqueFd(dup), ld.xwhiteouts});
    }
    j.n->stack = std::move(stack);
    j.n->layer = kUpper;
    return {};
  }
  // Before the layer: readers look at both. A metadata-only lower file's
  // copy keeps the data layer it had.
  if (j.meta && j.n->data_layer.load() == 0) j.n->data_layer = j.layer;
  j.n->layer = kUpper;
  return {};
}

std::string Copier::lazy_marker(Node* parent, const std::string& name, int layer, off_t size) {
  std::string rel = nodes_.path_of(parent);
  rel += rel.empty() ? name : "/" + name;
  std::string m = std::to_string(size);
  m += '\0';
  m += c_.lowerdirs.at(static_cast<size_t>(layer - 1));
  m += '\0';
  m += rel;
  return m;
}

Result<void> Copier::copy_data_in(Node* n, CopyData data) {
  if (data == CopyData::kMeta || n->data_layer.load() == 0) return {};
  std::lock_guard<std::mutex> g(n->copy_mu);
  int dl = n->data_layer.load();
  if (dl == 0) return {};
  if (dl < 0) return Errno{EIO};  // no lower data was found for it
  // Renames and links copy the data in before they move or link a node, so
  // its name is still the lower data's name in the parent's stack.
  std::string name;
  Node* p = nodes_.parent_of(n, &name);
  if (!p) return Errno{EIO};
  NodeRef hold(&nodes_, p);
  auto pstack = stack_of(p);
  int ufd = -1, sfd = -1;
  for (const auto& ld : *pstack) {
    if (ld.layer == kUpper) ufd = ld.fd.get();
    if (ld.layer == dl) sfd = ld.fd.get();
  }
  if (ufd < 0 || sfd < 0) return Errno{EIO};
  const char* nm = name.c_str();
  auto up = sys::open_at(ufd, nm, O_RDWR | O_NOFOLLOW);
  if (!up) return Errno{up.error()};
  int ud = up.value().get();
  auto unmark = [&]() -> Result<void> {
    for (const format::XattrNames* ns : format::kNamespaces)
      if (::fremovexattr(ud, ns->metacopy.data()) != 0 && errno != ENODATA) return last_errno();
    n->data_layer = 0;
    return {};
  };
  if (data == CopyData::kNone) {  // truncated to zero: none of the data is needed
    if (::ftruncate(ud, 0) != 0) return last_errno();
    return unmark();
  }
  struct stat ust;
  if (::fstat(ud, &ust) != 0) return last_errno();
  auto opened = open_in_layer(dl, sfd, nm, O_RDONLY | O_NOFOLLOW);
  if (!opened) return Errno{opened.error()};
  auto src = store::data_of(std::move(opened).value(), datadir_);
  if (!src) return Errno{src.error()};
  if (ust.st_size >= LazyCopy::kMinSize && lazy_.enabled()) {
    auto reserved = reserve_fill(src.value().get(), ud, ust.st_size);
    if (!reserved) return Errno{reserved.error()};
    struct timespec kept[2] = {ust.st_atim, ust.st_mtim};  // fallocate changes them
    if (::futimens(ud, kept) != 0) return last_errno();
    if (reserved.value()) {
      auto partial = lazy_.make(std::move(src).value(), ust.st_size,
                                lazy_marker(p, name, dl, ust.st_size));
      // Marked partial before it stops being metadata-only: a crash between
      // the two leaves a file that recovery fills and the marker still
      // reads from below, the same bytes.
      if (auto r = lazy_.mark(ufd, nm, ud, *partial); !r) return r;
      if (auto r = unmark(); !r) {
        (void)lazy_.complete(*partial);
        return r;
      }
      lazy_.publish(n, partial);
      return {};
    }
  }
  // Writing drops security.capability (and, without CAP_FSETID, set-id
  // bits): the metadata the copy already has is put back.
  char cap[1024];
  ssize_t caplen = ::fgetxattr(ud, "security.capability", cap, sizeof cap);
  if (auto r = copy_data(src.value().get(), ud, ust.st_size); !r) return r;
  if (caplen >= 0 && ::fsetxattr(ud, "security.capability", cap, static_cast<size_t>(caplen), 0) != 0)
    return last_errno();
  struct stat now;
  if (::fstat(ud, &now) != 0) return last_errno();
  if (now.st_mode != ust.st_mode && ::fchmod(ud, ust.st_mode & 07777) != 0) return last_errno();
  struct timespec ts[2] = {ust.st_atim, ust.st_mtim};
  if (::futimens(ud, ts) != 0) return last_errno();
  if (c_.fsync) {
    if (auto r = sys::fsync_fd(ud); !r) return r;
  }
  return unmark();
}

Result<void> Copier::copy_xattrs(int sfd, const char* sname, int dfd, const char* dname) {
  XattrPath src(sfd, sname), dst(dfd, dname);
  std::vector<char> names(4096);
  ssize_t len;
  for (;;) {
    len = src.list(names.data(), names.size());
    if (len >= 0) break;
    if (errno == ENOTSUP || errno == ENODATA) return {};
    if (errno != ERANGE) return last_errno();
    ssize_t need = src.list(nullptr, 0);
    if (need < 0) return last_errno();
    names.resize(static_cast<size_t>(need) + 1024);
  }
  std::vector<char> value(4096);
  for (ssize_t off = 0; off < len;) {
    const char* name = names.data() + off;
    off += static_cast<ssize_t>(std::strlen(name)) + 1;
    if (upper_.hides(name) && !upper_.escaped(name)) continue;
    ssize_t vlen;
    for (;;) {
      vlen = src.get(name, value.data(), value.size());
      if (vlen >= 0 || errno != ERANGE) break;
      ssize_t need = src.get(name, nullptr, 0);
      if (need < 0) break;
      value.resize(static_cast<size_t>(need));
    }
    if (vlen < 0) {
      if (errno == ENODATA) continue;
      return last_errno();
    }
    if (dst.set(name, value.data(), static_cast<size_t>(vlen), 0) != 0) {
      // Some xattrs cannot live on the upper filesystem or on this file type
      // (user.* on symlinks): the kernel's copy-up skips those too.
      if (errno == ENOTSUP || errno == EPERM) continue;
      return last_errno();
    }
  }
  return {};
}

}  // namespace layer::overlay
