#include "overlay/atime_mount.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>

#include "util/sys.hpp"

namespace layer::overlay {

namespace {

std::string real_path(const std::string& p) {
  std::unique_ptr<char, decltype(&std::free)> r(::realpath(p.c_str(), nullptr), &std::free);
  return r ? std::string(r.get()) : std::string();
}

uint64_t mount_attr_of(Atime a) {
  switch (a) {
    case Atime::kNoatime:
      return MOUNT_ATTR_NOATIME;
    case Atime::kStrictatime:
      return MOUNT_ATTR_STRICTATIME;
    case Atime::kRelatime:
      break;
  }
  return MOUNT_ATTR_RELATIME;
}

bool same_dir(int a, int b) {
  struct stat sa, sb;
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

std::string common_ancestor(const std::string& a, const std::string& b) {
  std::string ra = real_path(a), rb = real_path(b);
  if (ra.empty() || rb.empty()) return {};
  ra += '/';
  rb += '/';
  size_t n = 0;
  for (size_t i = 0; i < ra.size() && i < rb.size() && ra[i] == rb[i]; ++i)
    if (ra[i] == '/') n = i;
  return n == 0 ? "/" : ra.substr(0, n);
}

AtimeMount AtimeMount::clone(const std::string& dir, Atime atime, bool nodiratime) {
  AtimeMount m;
  m.base_ = real_path(dir);
  if (m.base_.empty()) return m;
  int fd = ::open_tree(AT_FDCWD, m.base_.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) return m;  // EPERM without CAP_SYS_ADMIN: the filesystem's own rule
  UniqueFd tree(fd);
  struct mount_attr attr {};
  attr.attr_set = mount_attr_of(atime) | (nodiratime ? MOUNT_ATTR_NODIRATIME : 0);
  attr.attr_clr = MOUNT_ATTR__ATIME | (nodiratime ? 0 : MOUNT_ATTR_NODIRATIME);
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) return m;
  m.root_ = std::move(tree);
  return m;
}

Result<UniqueFd> AtimeMount::open_dir(const std::string& path) const {
  auto through = open_below(path);
  if (through) return through;
  return sys::open_at(AT_FDCWD, path.c_str(), O_RDONLY | O_DIRECTORY);
}

Result<UniqueFd> AtimeMount::open_below(const std::string& path) const {
  if (!root_.valid()) return Errno{EXDEV};
  auto plain = sys::open_at(AT_FDCWD, path.c_str(), O_RDONLY | O_DIRECTORY);
  if (!plain) return plain;
  std::string rp = real_path(path);
  bool below = rp.compare(0, base_.size(), base_) == 0 &&
               (rp.size() == base_.size() || base_ == "/" || rp[base_.size()] == '/');
  if (!below) return Errno{EXDEV};
  std::string rel =
      rp.size() == base_.size() ? "." : rp.substr(base_.size() + (base_ == "/" ? 0 : 1));
  auto through = sys::open_at(root_.get(), rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  // Another mount on the way (the clone holds one mount, not those below
  // it) shows a different directory there.
  if (!through || !same_dir(through.value().get(), plain.value().get())) return Errno{EXDEV};
  return through;
}

}  // namespace layer::overlay
