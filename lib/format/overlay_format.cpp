#include "format/overlay_format.hpp"

#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "util/digest.hpp"
#include "util/sys.hpp"
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

// ---------------------------------------------------------------- index

namespace {

// FS_IOC_GETFSUUID (Linux 6.5; bookworm's headers predate it).
struct FsUuid {
  uint8_t len;
  uint8_t uuid[16];
};
constexpr unsigned long kGetFsUuid = _IOR(0x15, 0, FsUuid);

// The uuid the kernel puts in a handle of a file on the filesystem of `fd`
// (its super block's s_uuid): null when the filesystem (or kernel) tells none.
void fs_uuid(int fd, uint8_t out[16]) {
  FsUuid u{};
  int r = ::ioctl(fd, kGetFsUuid, &u);
  if (r != 0 && errno == EBADF) {  // an O_PATH fd: ask an open of the same directory
    int dup = ::open(sys::proc_path(fd).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup >= 0) {
      r = ::ioctl(dup, kGetFsUuid, &u);
      ::close(dup);
    }
  }
  std::memset(out, 0, 16);
  if (r == 0 && u.len == 16) std::memcpy(out, u.uuid, 16);
}

// struct ovl_fb, the kernel's on-disk handle header (fs/overlayfs/overlayfs.h).
constexpr uint8_t kFhVersion = 0;
constexpr uint8_t kFhMagic = 0xfb;
constexpr uint8_t kFhBigEndian = 1 << 0;
constexpr size_t kFhHeader = 5 + 16;  // version, magic, len, flags, type, uuid

}  // namespace

Result<std::string> origin_handle(int dirfd, const char* name) {
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  if (::name_to_handle_at(dirfd, name, fh, &mount_id, 0) != 0)
    return errno == ENOTSUP || errno == EOVERFLOW ? Errno{EOPNOTSUPP} : last_errno();
  if (fh->handle_type < 0 || fh->handle_type >= 0xff || kFhHeader + fh->handle_bytes > 0xff)
    return Errno{EOPNOTSUPP};
  std::string out(kFhHeader + fh->handle_bytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  p[0] = kFhVersion;
  p[1] = kFhMagic;
  p[2] = static_cast<uint8_t>(out.size());
  p[3] = __BYTE_ORDER == __BIG_ENDIAN ? kFhBigEndian : 0;
  p[4] = static_cast<uint8_t>(fh->handle_type);
  fs_uuid(dirfd, p + 5);
  std::memcpy(p + kFhHeader, fh->f_handle, fh->handle_bytes);
  return out;
}

Result<UniqueFd> open_origin(std::string_view handle, int mount_fd) {
  const auto* p = reinterpret_cast<const uint8_t*>(handle.data());
  if (handle.size() <= kFhHeader || handle.size() - kFhHeader > MAX_HANDLE_SZ ||
      p[0] != kFhVersion || p[1] != kFhMagic || p[2] != handle.size())
    return Errno{EINVAL};
  uint8_t uuid[16];
  fs_uuid(mount_fd, uuid);
  if (std::memcmp(uuid, p + 5, 16) != 0) return Errno{EXDEV};
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + MAX_HANDLE_SZ];
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = static_cast<unsigned>(handle.size() - kFhHeader);
  fh->handle_type = p[4];
  std::memcpy(fh->f_handle, p + kFhHeader, fh->handle_bytes);
  int fd = ::open_by_handle_at(mount_fd, fh, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return last_errno();
  return UniqueFd(fd);
}

std::string index_name(std::string_view handle) { return hex_encode(handle); }

std::string nlink_value(int upper_diff) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "U%+d", upper_diff);
  return buf;
}

std::optional<NlinkDiff> parse_nlink(std::string_view v) {
  // "U+N", "U-N", "L+N" or "L-N", N decimal (what the kernel's kstrtoint takes).
  if (v.size() < 3 || v.size() > 12 || (v[0] != 'U' && v[0] != 'L') || (v[1] != '+' && v[1] != '-'))
    return std::nullopt;
  int n = 0;
  for (char c : v.substr(2)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
    if (n > 1 << 24) return std::nullopt;
  }
  return NlinkDiff{v[0] == 'L', v[1] == '-' ? -n : n};
}

}  // namespace layer::format
