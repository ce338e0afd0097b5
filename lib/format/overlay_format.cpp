#include "format/overlay_format.hpp"

#include <fcntl.h>
#include <limits.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cstring>

#include "util/xattr_path.hpp"

namespace layer::format {

namespace {

// The part after "<prefix>" of a name the overlay format uses.
bool format_key(std::string_view rest) {
  for (const XattrNames* ns : kNamespaces) {
    std::string_view pre = ns->prefix;
    for (std::string_view full : {ns->opaque, ns->redirect, ns->whiteout, ns->whiteouts, ns->origin,
                                  ns->metacopy, ns->impure, ns->nlink, ns->upper})
      if (full.substr(pre.size()) == rest) return true;
    if (rest.starts_with(ns->own.substr(pre.size()))) return true;
  }
  return false;
}

bool has_xattr(const XattrPath& p, std::string_view name) {
  return p.get(name.data(), nullptr, 0) >= 0;
}

// The `escaped` infix: "<prefix>overlay.X".
constexpr std::string_view kEscape = "overlay.";

}  // namespace

bool is_private_xattr(std::string_view name) {
  for (std::string_view pre : kFuseOverlayfsPrefixes)
    if (name.starts_with(pre)) return true;
  for (const XattrNames* ns : kNamespaces)
    if (name.starts_with(ns->prefix)) return format_key(name.substr(ns->prefix.size()));
  return false;
}

std::string escape_xattr_name(std::string_view name) {
  for (const XattrNames* ns : kNamespaces)
    if (name.starts_with(ns->prefix))
      return std::string(ns->prefix) + std::string(kEscape) +
             std::string(name.substr(ns->prefix.size()));
  return std::string(name);
}

bool is_escaped_xattr(std::string_view stored, XattrNamespace ns) {
  std::string_view pre = names(ns).prefix;
  return stored.size() > pre.size() + kEscape.size() && stored.starts_with(pre) &&
         stored.substr(pre.size()).starts_with(kEscape);
}

std::optional<std::string> unescape_xattr_name(std::string_view stored) {
  for (const XattrNames* ns : kNamespaces) {
    if (!stored.starts_with(ns->prefix)) continue;
    std::string_view rest = stored.substr(ns->prefix.size());
    if (rest.size() > kEscape.size() && rest.starts_with(kEscape))
      return std::string(ns->prefix) + std::string(rest.substr(kEscape.size()));
    return std::nullopt;
  }
  return std::string(stored);
}

Whiteout classify(int dirfd, const char* name, const struct stat& st) {
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return Whiteout::kDevice;
  if (S_ISREG(st.st_mode) && st.st_size == 0) {
    XattrPath p(dirfd, name);
    if (has_xattr(p, kTrusted.whiteout) || has_xattr(p, kUser.whiteout)) return Whiteout::kXattr;
  }
  return Whiteout::kNone;
}

Whiteout classify_name(std::string_view name) {
  if (name == kOpaqueMarker) return Whiteout::kOciOpaque;
  if (name.starts_with(kWhiteoutPrefix)) return Whiteout::kOciName;
  return Whiteout::kNone;
}

bool has_oci_whiteout(int dirfd, std::string_view name) {
  if (name.size() + kWhiteoutPrefix.size() > NAME_MAX) return false;
  char buf[NAME_MAX + 1];
  std::memcpy(buf, kWhiteoutPrefix.data(), kWhiteoutPrefix.size());
  std::memcpy(buf + kWhiteoutPrefix.size(), name.data(), name.size());
  buf[kWhiteoutPrefix.size() + name.size()] = '\0';
  struct stat st;
  return ::fstatat(dirfd, buf, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

namespace {

// A redirect value, checked: no "..", no empty or NUL-bearing components.
std::string read_redirect(const XattrPath& p) {
  char buf[PATH_MAX];
  ssize_t n = p.get(kTrusted.redirect.data(), buf, sizeof(buf));
  if (n <= 0) n = p.get(kUser.redirect.data(), buf, sizeof(buf));
  if (n <= 0) return {};
  std::string r(buf, static_cast<size_t>(n));
  if (r.find('\0') != std::string::npos || r.find("..") != std::string::npos) return {};
  if (r[0] != '/' && (r == "." || r.size() > NAME_MAX || r.find('/') != std::string::npos))
    return {};
  return r;
}

}  // namespace

DirMarks read_dir_marks(int fd) {
  DirMarks m;
  XattrPath p(fd, nullptr);
  // A directory with no xattrs at all, the common case, costs one listxattr
  // instead of four getxattrs.
  ssize_t listed = ::flistxattr(fd, nullptr, 0);
  if (listed < 0 && errno == EBADF) listed = p.list(nullptr, 0);  // an O_PATH fd
  if (listed != 0) {
    for (const XattrNames* ns : kNamespaces) {
      char v[4];
      ssize_t n = p.get(ns->opaque.data(), v, sizeof(v));
      m.opaque = m.opaque || (n == 1 && v[0] == 'y');
      m.xwhiteouts = m.xwhiteouts || (n == 1 && v[0] == 'x');
    }
    m.redirect = read_redirect(p);
  }
  struct stat st;
  if (!m.opaque) m.opaque = ::fstatat(fd, kOpaqueMarker.data(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  return m;
}

bool is_opaque(int fd) {
  XattrPath p(fd, nullptr);
  for (const XattrNames* ns : kNamespaces) {
    char v[4];
    if (p.get(ns->opaque.data(), v, sizeof v) == 1 && v[0] == 'y') return true;
  }
  return false;
}

std::optional<std::string> file_redirect(int dirfd, const char* name) {
  std::string r = read_redirect(XattrPath(dirfd, name));
  if (r.empty()) return std::nullopt;
  return r;
}

bool is_metacopy(int dirfd, const char* name) {
  XattrPath p(dirfd, name);
  for (const XattrNames* ns : kNamespaces)
    if (p.get(ns->metacopy.data(), nullptr, 0) >= 0) return true;
  return false;
}

}  // namespace layer::format
