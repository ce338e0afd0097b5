// Overlay: copy-up. A lower object is copied into work/ under a temporary
// name with its data, owner, mode, xattrs and times, then renamed into the
// upper directory: a crash leaves either no upper copy or the whole one.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "overlay/overlay.hpp"
#include "util/xattr_path.hpp"
#include "util/sys.hpp"

namespace layer::overlay {

namespace {

int64_t now_ns() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

std::string Overlay::temp_name() {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "#lfs%llx",
                static_cast<unsigned long long>(temp_counter_.fetch_add(1) + 1));
  return buf;
}

std::string Overlay::index_name(uint64_t ino) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(ino));
  return buf;
}

// An index entry (workdir/layerfs-index/<origin ino>) names the upper copy of
// a lower file with several names by its file handle, so that it survives
// renames and adds no link the kernel would count; its xattr counts the names
// still only in a lower layer.
struct IndexEntry {  // declared in overlay.hpp
  uint64_t upper_ino;
  uint32_t handle_bytes;
  int32_t handle_type;
  unsigned char handle[MAX_HANDLE_SZ];
};

Result<void> Overlay::write_index(uint64_t ino, int dirfd, const char* name, uint32_t others) {
  IndexEntry e{};
  if (dirfd < 0) return write_index_entry(ino, e, others);  // a count only, no copy yet
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  e.upper_ino = st.st_ino;
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (::name_to_handle_at(dirfd, name, fh, &mount_id, 0) != 0) return last_errno();
  e.handle_bytes = fh->handle_bytes;
  e.handle_type = fh->handle_type;
  std::memcpy(e.handle, fh->f_handle, fh->handle_bytes);
  return write_index_entry(ino, e, others);
}

Result<void> Overlay::write_index_entry(uint64_t ino, const IndexEntry& e, uint32_t others) {
  std::string tmp = temp_name();
  auto fd = sys::open_at(work_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd) return Errno{fd.error()};
  if (auto r = sys::write_all(fd.value().get(), &e, sizeof(e)); !r) return r;
  if (::fsetxattr(fd.value().get(), names_xattr_.c_str(), &others, sizeof(others), 0) != 0)
    return last_errno();
  if (::renameat(work_.get(), tmp.c_str(), index_.get(), index_name(ino).c_str()) != 0)
    return last_errno();
  return {};
}

Result<UniqueFd> Overlay::open_index(uint64_t ino, uint64_t* upper_ino) {
  auto fd = sys::open_at(index_.get(), index_name(ino).c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) return Errno{fd.error()};
  IndexEntry e{};
  auto n = sys::read_full(fd.value().get(), &e, sizeof(e));
  if (!n) return Errno{n.error()};
  if (n.value() != sizeof(e) || e.handle_bytes > MAX_HANDLE_SZ || e.handle_bytes == 0)
    return Errno{ENOENT};
  if (upper_ino) *upper_ino = e.upper_ino;
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = e.handle_bytes;
  fh->handle_type = e.handle_type;
  std::memcpy(fh->f_handle, e.handle, e.handle_bytes);
  int r = ::open_by_handle_at(upper_.get(), fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (r < 0) return errno == ESTALE ? Errno{ENOENT} : last_errno();
  return UniqueFd(r);
}

bool Overlay::has_index(uint64_t ino) {
  struct stat st;
  return index_.valid() &&
         ::fstatat(index_.get(), index_name(ino).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<void> Overlay::link_from_index_locked(uint64_t ino, int dirfd, const char* name) {
  auto fd = open_index(ino, nullptr);
  if (!fd) return Errno{fd.error()};
  if (::linkat(AT_FDCWD, sys::proc_path(fd.value().get()).c_str(), dirfd, name, AT_SYMLINK_FOLLOW) != 0) return last_errno();
  ::unlinkat(index_.get(), (index_name(ino) + ".keep").c_str(), 0);  // a name holds it again
  XattrPath p(index_.get(), index_name(ino).c_str());
  uint32_t v = 0;
  if (p.get(names_xattr_.c_str(), &v, sizeof(v)) == sizeof(v) && v > 0) {
    --v;
    p.set(names_xattr_.c_str(), &v, sizeof(v), 0);
  }
  return {};
}

uint32_t Overlay::index_count(uint64_t ino) {
  uint32_t v = 0;
  XattrPath p(index_.get(), index_name(ino).c_str());
  if (p.get(names_xattr_.c_str(), &v, sizeof(v)) != sizeof(v)) return UINT32_MAX;
  return v;
}

Result<void> Overlay::forget_lower_name(uint64_t ino, nlink_t lower_nlink) {
  std::lock_guard<std::mutex> g(index_mu_);
  uint32_t v = index_count(ino);
  if (v == UINT32_MAX) return write_index(ino, -1, nullptr, static_cast<uint32_t>(lower_nlink - 1));
  if (v > 0) --v;
  XattrPath p(index_.get(), index_name(ino).c_str());
  if (p.set(names_xattr_.c_str(), &v, sizeof(v), 0) != 0) return last_errno();
  return {};
}

Result<void> Overlay::keep_last_link(uint64_t ino, int dirfd, const char* name) {
  // The last upper name of a copy whose other names are still below: keep
  // the inode (and its data) in the index for them.
  std::lock_guard<std::mutex> g(index_mu_);
  uint32_t v = index_count(ino);
  if (v == UINT32_MAX || v == 0) return {};
  if (::linkat(dirfd, name, index_.get(), (index_name(ino) + ".keep").c_str(), 0) != 0 &&
      errno != EEXIST)
    return last_errno();
  return {};
}

Result<void> Overlay::link_from_index(uint64_t ino, int dirfd, const char* name) {
  std::lock_guard<std::mutex> g(index_mu_);
  return link_from_index_locked(ino, dirfd, name);
}

uint32_t Overlay::lower_names(uint64_t ino, const struct stat& upper_st) {
  std::string key = index_name(ino);
  auto fd = sys::open_at(index_.get(), key.c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) return UINT32_MAX;
  uint64_t uino = 0;
  auto n = sys::read_full(fd.value().get(), &uino, sizeof(uino));
  if (!n || n.value() != sizeof(uino) || uino != upper_st.st_ino) return UINT32_MAX;
  uint32_t v = 0;
  if (::fgetxattr(fd.value().get(), names_xattr_.c_str(), &v, sizeof(v)) != sizeof(v)) return 0;
  return v;
}

nlink_t Overlay::indexed_nlink(uint64_t ino, const struct stat& upper_st) {
  nlink_t n = upper_st.st_nlink;
  // A copy whose upper names are all gone is held by the index's ".keep" link.
  struct stat k;
  if (::fstatat(index_.get(), (index_name(ino) + ".keep").c_str(), &k, AT_SYMLINK_NOFOLLOW) == 0 &&
      k.st_ino == upper_st.st_ino && n > 0)
    --n;
  uint32_t lower = lower_names(ino, upper_st);
  if (lower != UINT32_MAX) n += lower;
  return n;
}

void Overlay::mark_impure(int dirfd) {
  // The kernel's marker for "holds copied-up entries": it then takes d_ino
  // from the entries' origins in readdir, as it does for st_ino.
  XattrPath p(dirfd, nullptr);
  char v;
  if (p.get(impure_xattr_.c_str(), &v, 1) == 1) return;
  p.set(impure_xattr_.c_str(), "y", 1, 0);
}

Result<void> Overlay::copy_data(int src, int dst, off_t size) {
  if (size == 0) return {};
  if (::ioctl(dst, FICLONE, src) == 0) return {};
  // Only the data extents: holes stay holes.
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

Result<void> Overlay::copy_xattrs(int sfd, const char* sname, int dfd, const char* dname) {
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
    if (private_xattr(name) && !escaped_xattr(name)) continue;
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

Result<void> Overlay::remove_in_work(const char* name) {
  // Recursive removal beneath work/, never following symlinks.
  struct stat st;
  if (::fstatat(work_.get(), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? Result<void>() : Result<void>(last_errno());
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(work_.get(), name, 0) != 0 && errno != ENOENT) return last_errno();
    return {};
  }
  try {
    sys::xremove_tree(work_.get(), name);
  } catch (const std::system_error& e) {
    return Errno{e.code().value() ? e.code().value() : EIO};
  } catch (...) {
    return Errno{EIO};
  }
  return {};
}

Result<int> Overlay::upper_dirfd(Node* dir, std::shared_ptr<const DirStack>* keep) {
  *keep = stack_of(dir);
  if ((*keep)->empty() || (*keep)->front().layer != kUpper) return Errno{EIO};
  return (*keep)->front().fd.get();
}

Result<void> Overlay::copy_up(Node* n, CopyData data_mode) {
  if (n->layer.load() == kUpper) return {};
  if (!writable()) return Errno{EROFS};
  std::string name;
  Node* p = parent_of(n, &name);
  if (!p) return Errno{EIO};
  NodeRef hold(this, p);
  auto pr = copy_up(p);  // parents first, each with its metadata
  if (!pr) return pr;
  std::lock_guard<std::mutex> g(n->copy_mu);
  if (n->layer.load() == kUpper) return {};
  // Renames copy up before they move a node, so the name read before taking
  // copy_mu is still this node's name.
  return copy_up_locked(n, p, name, data_mode);
}

Result<void> Overlay::copy_up_locked(Node* n, Node* p, const std::string& name,
                                     CopyData data_mode) {
  std::shared_ptr<const DirStack> pstack;
  auto ufd_r = upper_dirfd(p, &pstack);
  if (!ufd_r) return Errno{ufd_r.error()};
  int ufd = ufd_r.value();
  int sfd = -1;
  int layer = n->layer.load();
  for (const auto& ld : *pstack)
    if (ld.layer == layer) sfd = ld.fd.get();
  if (sfd < 0) return Errno{EIO};
  const char* nm = name.c_str();

  struct stat st;
  if (::fstatat(sfd, nm, &st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  struct stat pst;
  if (::fstat(ufd, &pst) != 0) return last_errno();

  // A lower file with several names: if another name was copied up already,
  // this one becomes a link to that copy.
  bool indexed = S_ISREG(st.st_mode) && st.st_nlink > 1 && index_.valid();
  std::unique_lock<std::mutex> index_lock;
  if (indexed) {
    index_lock = std::unique_lock<std::mutex>(index_mu_);
    auto l = link_from_index_locked(n->ino, ufd, nm);
    if (l) {
      struct timespec pts[2] = {pst.st_atim, pst.st_mtim};
      ::futimens(ufd, pts);
      n->layer = kUpper;
      return {};
    }
    if (l.error() != ENOENT) return l;
  }

  std::string tmp = temp_name();
  int wfd = work_.get();
  const char* tn = tmp.c_str();
  UniqueFd data;
  std::shared_ptr<Partial> partial;
  auto fail = [&](int err) -> Result<void> {
    (void)remove_in_work(tn);
    return Errno{err};
  };

  switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
      if (::mkdirat(wfd, tn, 0700) != 0) return last_errno();
      break;
    case S_IFREG: {
      auto opened = open_in_layer(layer, sfd, nm, O_RDONLY | O_NOFOLLOW);
      if (!opened) return Errno{opened.error()};
      auto src = lower_data(std::move(opened).value());  // a content object's data
      if (!src) return Errno{src.error()};
      auto dst = sys::open_at(wfd, tn, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
      if (!dst) return Errno{dst.error()};
      data = std::move(dst).value();
      if (data_mode == CopyData::kNone) break;
      if (st.st_size >= kPartialMin && !indexed && partial_dir_.valid()) {
        // Big file: only the metadata now; the data follows in the background
        // and is read from the lower file until then.
        if (::ftruncate(data.get(), st.st_size) != 0) return fail(errno);
        std::string rel = path_of(p);
        rel += rel.empty() ? name : "/" + name;
        std::string marker = std::to_string(st.st_size);
        marker += '\0';
        marker += opts_.lowerdirs.at(static_cast<size_t>(layer - 1));
        marker += '\0';
        marker += rel;
        partial = std::make_shared<Partial>();
        partial->lower = std::move(src).value();
        partial->limit = st.st_size;
        partial->last_write_ns = now_ns();  // the write that asked for it comes next
        partial->marker = std::move(marker);
        break;
      }
      auto r = copy_data(src.value().get(), data.get(), st.st_size);
      if (!r) return fail(r.error());
      break;
    }
    case S_IFLNK: {
      char target[PATH_MAX];
      ssize_t len = ::readlinkat(sfd, nm, target, sizeof(target) - 1);
      if (len < 0) return last_errno();
      target[len] = '\0';
      if (::symlinkat(target, wfd, tn) != 0) return last_errno();
      break;
    }
    default:
      if (::mknodat(wfd, tn, (st.st_mode & S_IFMT) | 0600, st.st_rdev) != 0) return last_errno();
      break;
  }

  // Owner before mode (chown clears set-id bits), xattrs after both (chown
  // also drops security.capability), times last.
  if (::fchownat(wfd, tn, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) return fail(errno);
  if (!S_ISLNK(st.st_mode) && ::fchmodat(wfd, tn, st.st_mode & 07777, 0) != 0) return fail(errno);
  if (auto r = copy_xattrs(sfd, nm, wfd, tn); !r) return fail(r.error());
  uint64_t origin = n->ino;
  if (XattrPath(wfd, tn).set(origin_xattr_.c_str(), &origin, sizeof(origin), 0) != 0 &&
      !S_ISLNK(st.st_mode))
    return fail(errno);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  if (::utimensat(wfd, tn, ts, AT_SYMLINK_NOFOLLOW) != 0) return fail(errno);
  // (A partial file needs no fsync: its data is still the lower's, and the
  // marker lets the next mount finish it.)
  if (data.valid() && opts_.fsync && !partial) {
    if (auto r = sys::fsync_fd(data.get()); !r) return fail(r.error());
  }
  if (partial) {
    // Marked and registered before it becomes visible: a crash from here on
    // leaves a file the next mount completes.
    if (XattrPath(wfd, tn).set(partial_xattr_.c_str(), partial->marker.data(),
                               partial->marker.size(), 0) != 0)
      return fail(errno);
    struct stat ust;
    if (::fstat(data.get(), &ust) != 0) return fail(errno);
    partial->upper_ino = ust.st_ino;
    partial->reg_name = index_name(ust.st_ino);
    if (::linkat(wfd, tn, partial_dir_.get(), partial->reg_name.c_str(), 0) != 0)
      return fail(errno);
    auto rw = sys::open_at(wfd, tn, O_RDWR | O_NOFOLLOW);
    if (!rw) return fail(rw.error());
    partial->upper = std::move(rw).value();
  }
  data.reset();
  if (::renameat2(wfd, tn, ufd, nm, RENAME_NOREPLACE) != 0) {
    if (partial) ::unlinkat(partial_dir_.get(), partial->reg_name.c_str(), 0);
    return fail(errno);
  }
  mark_impure(ufd);
  if (indexed) {
    // Without the index entry the other names would get copies of their
    // own: a broken link, not a broken file, so this is not an error.
    uint32_t known = index_count(n->ino);
    uint32_t others =
        known != UINT32_MAX ? (known > 0 ? known - 1 : 0) : static_cast<uint32_t>(st.st_nlink - 1);
    (void)write_index(n->ino, ufd, nm, others);
    index_lock.unlock();
  }
  if (partial) {
    {
      std::lock_guard<std::mutex> g(n->mu);
      n->partial = partial;
    }
    std::lock_guard<std::mutex> g(partial_mu_);
    partials_[partial->upper_ino] = partial;
    partial_queue_.push_back(partial);
    partial_cv_.notify_one();
  }
  // The parent's times are not changed by a copy-up.
  struct timespec pts[2] = {pst.st_atim, pst.st_mtim};
  ::futimens(ufd, pts);

  if (S_ISDIR(st.st_mode)) {
    auto fd = sys::open_at(ufd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!fd) return Errno{fd.error()};
    std::lock_guard<std::mutex> g(n->mu);
    auto stack = std::make_shared<DirStack>();
    stack->push_back(LayerDir{kUpper, std::move(fd).value()});
    for (const auto& ld : *n->stack) {
      int dup = ::fcntl(ld.fd.get(), F_DUPFD_CLOEXEC, 0);
      if (dup < 0) return last_errno();
      stack->push_back(LayerDir{ld.layer, UniqueFd(dup), ld.xwhiteouts});
    }
    n->stack = std::move(stack);
    n->layer = kUpper;
  } else {
    n->layer = kUpper;
  }
  return {};
}

}  // namespace layer::overlay
