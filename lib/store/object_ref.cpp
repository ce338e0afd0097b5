#include "store/object_ref.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/xattr.h>

#include "store/layout.hpp"
#include "format/overlay_format.hpp"
#include "util/sys.hpp"

namespace layer::store {

std::optional<Digest> object_named_by(int fd) {
  for (const format::XattrNames* ns : format::kNamespaces) {
    if (::fgetxattr(fd, ns->metacopy.data(), nullptr, 0) != 0) continue;  // absent, or not empty
    char buf[160];
    ssize_t n = ::fgetxattr(fd, ns->redirect.data(), buf, sizeof buf);
    if (n <= 0) continue;
    return Layout::parse_object_redirect(std::string_view(buf, static_cast<size_t>(n)));
  }
  return std::nullopt;
}

Result<UniqueFd> open_object(int objects_dir, const Digest& d) {
  std::string rel = Layout::object_redirect(d).substr(1);
  auto r = sys::open_beneath(objects_dir, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_NOATIME, 0,
                             RESOLVE_NO_SYMLINKS);
  if (!r && r.error() == EPERM)
    r = sys::open_beneath(objects_dir, rel.c_str(), O_RDONLY | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
  return r;
}

Result<UniqueFd> data_of(UniqueFd fd, int objects_dir, MissingObjects* missing) {
  if (objects_dir < 0) return fd;
  auto d = object_named_by(fd.get());
  if (!d) return fd;
  auto r = open_object(objects_dir, *d);
  if (r || r.error() != ENOENT || !missing) return r;
  if (auto f = missing->fetch(*d); !f) return Errno{f.error()};
  return open_object(objects_dir, *d);
}

}  // namespace layer::store
