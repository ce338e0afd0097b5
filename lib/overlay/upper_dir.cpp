#include "overlay/upper_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <system_error>
#include <vector>

#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

std::string ino_name(uint64_t ino) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(ino));
  return buf;
}

std::string UpperDir::temp_name() {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "#lfs%llx",
                static_cast<unsigned long long>(temp_counter_.fetch_add(1) + 1));
  return buf;
}

Result<void> UpperDir::set_opaque(int dirfd) {
  if (XattrPath(dirfd, nullptr).set(xattrs().opaque.data(), "y", 1, 0) != 0) return last_errno();
  return {};
}

Result<void> UpperDir::make_whiteout(int dirfd, const char* name) {
  if (::mknodat(dirfd, name, S_IFCHR | 0, makedev(0, 0)) == 0) return {};
  if (errno != EPERM) return last_errno();
  // Without CAP_MKNOD: the kernel's xattr whiteout.
  auto fd = sys::open_at(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0);
  if (!fd) return Errno{fd.error()};
  if (::fsetxattr(fd.value().get(), xattrs().whiteout.data(), "", 0, 0) != 0) {
    int e = errno;
    ::unlinkat(dirfd, name, 0);
    return Errno{e};
  }
  return {};
}

Result<void> UpperDir::move_name(int fromdir, const char* from, int todir, const char* to,
                                 bool whiteout) {
  if (::renameat2(fromdir, from, todir, to, whiteout ? RENAME_WHITEOUT : 0) == 0) return {};
  // No RENAME_WHITEOUT on this filesystem (EINVAL) or without CAP_MKNOD
  // (EPERM): the rename, then our own whiteout.
  if (!whiteout || (errno != EINVAL && errno != EPERM)) return last_errno();
  if (::renameat(fromdir, from, todir, to) != 0) return last_errno();
  return make_whiteout(fromdir, from);
}

Result<bool> UpperDir::is_whiteout(int dirfd, const char* name) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? Result<bool>(false) : Result<bool>(last_errno());
  if (format::is_whiteout(dirfd, name, st)) return true;
  return Errno{EEXIST};  // a real object: the caller's merged lookup missed it
}

void UpperDir::mark_impure(int dirfd) {
  // The kernel's marker for "holds copied-up entries": it then takes d_ino
  // from the entries' origins in readdir, as it does for st_ino.
  XattrPath p(dirfd, nullptr);
  char v;
  if (p.get(xattrs().impure.data(), &v, 1) == 1) return;
  p.set(xattrs().impure.data(), "y", 1, 0);
}

Result<void> UpperDir::remove_in_work(const char* name) {
  // Recursive removal beneath work/, never following symlinks.
  struct stat st;
  if (::fstatat(work(), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? Result<void>() : Result<void>(last_errno());
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(work(), name, 0) != 0 && errno != ENOENT) return last_errno();
    return {};
  }
  try {
    sys::xremove_tree(work(), name);
  } catch (const std::system_error& e) {
    return Errno{e.code().value() ? e.code().value() : EIO};
  } catch (...) {
    return Errno{EIO};
  }
  return {};
}

Result<void> UpperDir::remove_whiteouts(int dirfd) {
  auto fd = sys::open_at(dirfd, ".", O_RDONLY | O_DIRECTORY);
  if (!fd) return Errno{fd.error()};
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::fdopendir(fd.value().get()), &::closedir);
  if (!dir) return last_errno();
  fd.value().release();
  std::vector<std::string> victims;
  for (;;) {
    errno = 0;
    struct dirent* e = ::readdir(dir.get());
    if (!e) {
      if (errno != 0) return last_errno();
      break;
    }
    if (e->d_type != DT_CHR && e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    std::string_view nm(e->d_name);
    if (nm == "." || nm == "..") continue;
    auto wh = is_whiteout(dirfd, e->d_name);
    if (wh.ok() && wh.value()) victims.emplace_back(nm);
  }
  for (const auto& v : victims)
    if (::unlinkat(dirfd, v.c_str(), 0) != 0 && errno != ENOENT) return last_errno();
  return {};
}

}  // namespace layer::overlay
