#include "overlay/link_index.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "format/overlay_format.hpp"
#include "overlay/upper_dir.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

namespace {

// The link count every name of the indexed inode `p` (stat `st`) shows, from
// its nlink xattr; `lower_nlink` (0: unknown) resolves the lower-relative
// form. Without a usable value, the inode's own count (the kernel's fallback).
nlink_t nlink_of(const XattrPath& p, const char* xattr, const struct stat& st,
                 nlink_t lower_nlink) {
  char buf[16];
  ssize_t n = p.get(xattr, buf, sizeof(buf));
  if (n <= 0) return st.st_nlink;
  auto v = format::parse_nlink(std::string_view(buf, static_cast<size_t>(n)));
  if (!v || (v->lower && lower_nlink == 0)) return st.st_nlink;
  long long total = static_cast<long long>(v->lower ? lower_nlink : st.st_nlink) + v->diff;
  return total > 0 ? static_cast<nlink_t>(total) : st.st_nlink;
}

// An entry of the older index (workdir/layerfs-index/<origin ino>): the upper
// copy by file handle, and in an xattr the names still only below.
struct LegacyEntry {
  uint64_t upper_ino;
  uint32_t handle_bytes;
  int32_t handle_type;
  unsigned char handle[MAX_HANDLE_SZ];
};

}  // namespace

Result<IndexKey> LinkIndex::key_of(uint64_t ino, int dirfd, const char* name) {
  auto h = format::origin_handle(dirfd, name);
  if (!h) return Errno{h.error()};
  IndexKey k{std::move(h).value(), {}};
  k.name = format::index_name(k.handle);
  if (legacy_.valid()) migrate(ino, k);
  return k;
}

Result<void> LinkIndex::set_nlink(int dirfd, const char* name, int upper_diff) {
  std::string v = format::nlink_value(upper_diff);
  if (XattrPath(dirfd, name).set(upper_.xattrs().nlink.data(), v.data(), v.size(), 0) != 0)
    return last_errno();
  return {};
}

Result<void> LinkIndex::link_to(const IndexKey& k, int dirfd, const char* name) {
  struct stat st;
  if (::fstatat(dir_.get(), k.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  if (!S_ISREG(st.st_mode)) return Errno{ENOENT};  // the kernel's whiteout entry: no copy
  nlink_t total =
      nlink_of(XattrPath(dir_.get(), k.name.c_str()), upper_.xattrs().nlink.data(), st, 0);
  if (::linkat(dir_.get(), k.name.c_str(), dirfd, name, 0) != 0) return last_errno();
  // One more upper name, as many names in all.
  (void)set_nlink(dirfd, name, static_cast<int>(total) - static_cast<int>(st.st_nlink + 1));
  return {};
}

void LinkIndex::record(const IndexKey& k, int dirfd, const char* name, nlink_t lower_nlink) {
  XattrPath p(dirfd, name);
  if (p.set(upper_.xattrs().origin.data(), k.handle.data(), k.handle.size(), 0) != 0) return;
  // Its names: all the lower's; its upper links: this name and the entry.
  if (!set_nlink(dirfd, name, static_cast<int>(lower_nlink) - 2)) return;
  // An entry left for another inode (the kernel's, of a copy since removed)
  // is replaced.
  std::string tmp = upper_.temp_name();
  if (::linkat(dirfd, name, upper_.work(), tmp.c_str(), 0) != 0) return;
  if (::renameat(upper_.work(), tmp.c_str(), dir_.get(), k.name.c_str()) != 0)
    ::unlinkat(upper_.work(), tmp.c_str(), 0);
}

Result<UniqueFd> LinkIndex::copy_of(const IndexKey& k) {
  auto fd = sys::open_at(dir_.get(), k.name.c_str(), O_PATH | O_NOFOLLOW);
  if (!fd) return fd.error() == ENOENT ? Result<UniqueFd>(UniqueFd()) : Errno{fd.error()};
  struct stat st;
  if (::fstat(fd.value().get(), &st) != 0) return last_errno();
  if (!S_ISREG(st.st_mode)) return UniqueFd();
  return fd;
}

nlink_t LinkIndex::union_nlink(int dirfd, const char* name, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return st.st_nlink;
  return nlink_of(XattrPath(dirfd, name), upper_.xattrs().nlink.data(), st, 0);
}

void LinkIndex::forget(int dirfd, const char* name) {
  std::lock_guard<std::mutex> g(mu_);
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
      st.st_nlink != 2)
    return;
  XattrPath p(dirfd, name);
  unsigned char handle[256];
  ssize_t n = p.get(upper_.xattrs().origin.data(), handle, sizeof(handle));
  if (n <= 0) return;
  std::string entry =
      format::index_name(std::string_view(reinterpret_cast<char*>(handle), static_cast<size_t>(n)));
  struct stat e;
  if (::fstatat(dir_.get(), entry.c_str(), &e, AT_SYMLINK_NOFOLLOW) != 0 || e.st_ino != st.st_ino)
    return;
  if (nlink_of(p, upper_.xattrs().nlink.data(), st, 0) <= 1)
    ::unlinkat(dir_.get(), entry.c_str(), 0);
}

void LinkIndex::migrate(uint64_t ino, const IndexKey& k) {
  std::lock_guard<std::mutex> g(mu_);
  std::string old = ino_name(ino);
  std::string keep = old + ".keep";
  auto fd = sys::open_at(legacy_.get(), old.c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) return;  // not indexed before (the usual case)
  LegacyEntry e{};
  auto n = sys::read_full(fd.value().get(), &e, sizeof(e));
  uint32_t below = 0;
  if (::fgetxattr(fd.value().get(), upper_.xattrs().layerfs_lower_names.data(), &below,
                  sizeof(below)) != sizeof(below))
    below = 0;
  fd.value().reset();
  // The copy: held by the ".keep" link when no upper name is left, else found
  // by its handle. (An entry with a count only, no copy, has nothing to move.)
  UniqueFd copy;
  if (auto kf = sys::open_at(legacy_.get(), keep.c_str(), O_PATH | O_NOFOLLOW)) {
    copy = std::move(kf).value();
  } else if (n && n.value() == sizeof(e) && e.handle_bytes > 0 && e.handle_bytes <= MAX_HANDLE_SZ) {
    alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
    auto* fh = reinterpret_cast<file_handle*>(buf);
    fh->handle_bytes = e.handle_bytes;
    fh->handle_type = e.handle_type;
    std::memcpy(fh->f_handle, e.handle, e.handle_bytes);
    copy = UniqueFd(::open_by_handle_at(upper_.upper(), fh, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  }
  struct stat st, have;
  if (copy.valid() && ::fstat(copy.get(), &st) == 0 && S_ISREG(st.st_mode) &&
      (e.upper_ino == 0 || st.st_ino == e.upper_ino) &&
      ::fstatat(dir_.get(), k.name.c_str(), &have, AT_SYMLINK_NOFOLLOW) != 0) {
    XattrPath p(copy.get(), nullptr);
    if (p.set(upper_.xattrs().origin.data(), k.handle.data(), k.handle.size(), 0) != 0 ||
        !set_nlink(copy.get(), nullptr, static_cast<int>(below) - 1) ||
        ::linkat(AT_FDCWD, sys::proc_path(copy.get()).c_str(), dir_.get(), k.name.c_str(),
                 AT_SYMLINK_FOLLOW) != 0)
      return;  // left in the older index, to try again
  }
  ::unlinkat(legacy_.get(), keep.c_str(), 0);
  ::unlinkat(legacy_.get(), old.c_str(), 0);
}

}  // namespace layer::overlay
