#include "overlay/link_index.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "overlay/upper_dir.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

// An index entry (workdir/layerfs-index/<origin ino>) names the upper copy of
// a lower file with several names by its file handle, so that it survives
// renames and adds no link the kernel would count; its xattr counts the names
// still only in a lower layer.
struct IndexEntry {  // declared in link_index.hpp
  uint64_t upper_ino;
  uint32_t handle_bytes;
  int32_t handle_type;
  unsigned char handle[MAX_HANDLE_SZ];
};

Result<void> LinkIndex::write(uint64_t ino, int dirfd, const char* name, uint32_t others) {
  IndexEntry e{};
  if (dirfd < 0) return write_entry(ino, e, others);  // a count only, no copy yet
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
  return write_entry(ino, e, others);
}

Result<void> LinkIndex::write_entry(uint64_t ino, const IndexEntry& e, uint32_t others) {
  std::string tmp = upper_.temp_name();
  auto fd = sys::open_at(upper_.work(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (!fd) return Errno{fd.error()};
  if (auto r = sys::write_all(fd.value().get(), &e, sizeof(e)); !r) return r;
  if (::fsetxattr(fd.value().get(), names_xattr_, &others, sizeof(others), 0) != 0)
    return last_errno();
  if (::renameat(upper_.work(), tmp.c_str(), dir_.get(), ino_name(ino).c_str()) != 0)
    return last_errno();
  return {};
}

Result<UniqueFd> LinkIndex::open_entry(uint64_t ino, uint64_t* upper_ino) {
  auto fd = sys::open_at(dir_.get(), ino_name(ino).c_str(), O_RDONLY | O_NOFOLLOW);
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
  int r = ::open_by_handle_at(upper_.upper(), fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (r < 0) return errno == ESTALE ? Errno{ENOENT} : last_errno();
  return UniqueFd(r);
}

bool LinkIndex::has(uint64_t ino) {
  struct stat st;
  return dir_.valid() &&
         ::fstatat(dir_.get(), ino_name(ino).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<void> LinkIndex::link_to(uint64_t ino, int dirfd, const char* name) {
  auto fd = open_entry(ino, nullptr);
  if (!fd) return Errno{fd.error()};
  if (::linkat(AT_FDCWD, sys::proc_path(fd.value().get()).c_str(), dirfd, name,
               AT_SYMLINK_FOLLOW) != 0)
    return last_errno();
  ::unlinkat(dir_.get(), (ino_name(ino) + ".keep").c_str(), 0);  // a name holds it again
  XattrPath p(dir_.get(), ino_name(ino).c_str());
  uint32_t v = 0;
  if (p.get(names_xattr_, &v, sizeof(v)) == sizeof(v) && v > 0) {
    --v;
    p.set(names_xattr_, &v, sizeof(v), 0);
  }
  return {};
}

uint32_t LinkIndex::count(uint64_t ino) {
  uint32_t v = 0;
  XattrPath p(dir_.get(), ino_name(ino).c_str());
  if (p.get(names_xattr_, &v, sizeof(v)) != sizeof(v)) return UINT32_MAX;
  return v;
}

Result<void> LinkIndex::forget_lower_name(uint64_t ino, nlink_t lower_nlink) {
  std::lock_guard<std::mutex> g(mu_);
  uint32_t v = count(ino);
  if (v == UINT32_MAX) return write(ino, -1, nullptr, static_cast<uint32_t>(lower_nlink - 1));
  if (v > 0) --v;
  XattrPath p(dir_.get(), ino_name(ino).c_str());
  if (p.set(names_xattr_, &v, sizeof(v), 0) != 0) return last_errno();
  return {};
}

Result<void> LinkIndex::keep_last_link(uint64_t ino, int dirfd, const char* name) {
  // The last upper name of a copy whose other names are still below: keep
  // the inode (and its data) in the index for them.
  std::lock_guard<std::mutex> g(mu_);
  uint32_t v = count(ino);
  if (v == UINT32_MAX || v == 0) return {};
  if (::linkat(dirfd, name, dir_.get(), (ino_name(ino) + ".keep").c_str(), 0) != 0 &&
      errno != EEXIST)
    return last_errno();
  return {};
}

uint32_t LinkIndex::lower_names(uint64_t ino, const struct stat& upper_st) {
  std::string key = ino_name(ino);
  auto fd = sys::open_at(dir_.get(), key.c_str(), O_RDONLY | O_NOFOLLOW);
  if (!fd) return UINT32_MAX;
  uint64_t uino = 0;
  auto n = sys::read_full(fd.value().get(), &uino, sizeof(uino));
  if (!n || n.value() != sizeof(uino) || uino != upper_st.st_ino) return UINT32_MAX;
  uint32_t v = 0;
  if (::fgetxattr(fd.value().get(), names_xattr_, &v, sizeof(v)) != sizeof(v)) return 0;
  return v;
}

nlink_t LinkIndex::indexed_nlink(uint64_t ino, const struct stat& upper_st) {
  nlink_t n = upper_st.st_nlink;
  // A copy whose upper names are all gone is held by the index's ".keep" link.
  struct stat k;
  if (::fstatat(dir_.get(), (ino_name(ino) + ".keep").c_str(), &k, AT_SYMLINK_NOFOLLOW) == 0 &&
      k.st_ino == upper_st.st_ino && n > 0)
    --n;
  uint32_t lower = lower_names(ino, upper_st);
  if (lower != UINT32_MAX) n += lower;
  return n;
}

Result<UniqueFd> LinkIndex::indexed_copy(Node* n) {
  if (n->type != S_IFREG || !n->shared.load() || n->layer.load() == kUpper || !dir_.valid())
    return UniqueFd();
  auto fd = open_entry(n->ino, nullptr);
  if (!fd && fd.error() == ENOENT) return UniqueFd();  // no copy (yet, or a count only)
  return fd;
}

void LinkIndex::record(uint64_t ino, int dirfd, const char* name, nlink_t lower_nlink) {
  uint32_t known = count(ino);
  uint32_t others =
      known != UINT32_MAX ? (known > 0 ? known - 1 : 0) : static_cast<uint32_t>(lower_nlink - 1);
  (void)write(ino, dirfd, name, others);
}

}  // namespace layer::overlay
