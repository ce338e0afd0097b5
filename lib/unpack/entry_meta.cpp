// TreeWriter: an entry's owner, xattrs (POSIX ACLs included), mode and times.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "format/overlay_format.hpp"
#include "unpack/tree_writer.hpp"
#include "unpack/tree_writer_util.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::unpack {

using detail::shown;

namespace {

// The kernel's system.posix_acl_* xattr value (uapi/linux/posix_acl_xattr.h:
// a version-2 header, then {tag, perm, id} entries sorted by tag and id, all
// little-endian) for the entry's ACL of `type`; empty if it has none beyond
// its mode. libarchive gives the three mode entries (owner, group, other)
// itself for an access ACL.
std::string posix_acl_xattr(archive_entry* e, int type) {
  int n = archive_entry_acl_reset(e, type);
  if (n <= (type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS ? 3 : 0)) return {};
  struct Ent {
    uint16_t tag, perm;
    uint32_t id;
  };
  std::vector<Ent> ents;
  int etype, permset, tag, qual;
  const char* name;
  while (archive_entry_acl_next(e, type, &etype, &permset, &tag, &qual, &name) == ARCHIVE_OK) {
    uint16_t kt;
    switch (tag) {
      case ARCHIVE_ENTRY_ACL_USER_OBJ:
        kt = 0x01;
        break;
      case ARCHIVE_ENTRY_ACL_USER:
        kt = 0x02;
        break;
      case ARCHIVE_ENTRY_ACL_GROUP_OBJ:
        kt = 0x04;
        break;
      case ARCHIVE_ENTRY_ACL_GROUP:
        kt = 0x08;
        break;
      case ARCHIVE_ENTRY_ACL_MASK:
        kt = 0x10;
        break;
      case ARCHIVE_ENTRY_ACL_OTHER:
        kt = 0x20;
        break;
      default:
        continue;  // NFSv4 "everyone@" and the like: not POSIX
    }
    uint16_t perm = static_cast<uint16_t>(((permset & ARCHIVE_ENTRY_ACL_READ) ? 4 : 0) |
                                          ((permset & ARCHIVE_ENTRY_ACL_WRITE) ? 2 : 0) |
                                          ((permset & ARCHIVE_ENTRY_ACL_EXECUTE) ? 1 : 0));
    uint32_t id = (kt == 0x02 || kt == 0x08) ? static_cast<uint32_t>(qual) : 0xFFFFFFFFu;
    ents.push_back({kt, perm, id});
  }
  std::sort(ents.begin(), ents.end(), [](const Ent& a, const Ent& b) {
    return a.tag != b.tag ? a.tag < b.tag : a.id < b.id;
  });
  std::string out;
  auto put = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(2, 4);  // POSIX_ACL_XATTR_VERSION
  for (const Ent& x : ents) {
    put(x.tag, 2);
    put(x.perm, 2);
    put(x.id, 4);
  }
  return out;
}

// fuse-overlayfs's record of owner and mode (layerfs -o xattr_permissions=1|2
// reads it in place of the inode's): a layer must not decide those for a
// mount that runs with the option, so a tar carrying it is refused.
bool stat_override_xattr(std::string_view name) {
  return name.starts_with("user.fuseoverlayfs.") || name.starts_with("security.fuseoverlayfs.");
}

}  // namespace

TreeWriter::DirMeta TreeWriter::dir_meta(archive_entry* e) const {
  DirMeta m;
  m.mode = archive_entry_perm(e) & 07777;
  if (archive_entry_mtime_is_set(e)) {
    m.has_times = true;
    m.times[1].tv_sec = archive_entry_mtime(e);
    m.times[1].tv_nsec = archive_entry_mtime_nsec(e);
    if (archive_entry_atime_is_set(e)) {
      m.times[0].tv_sec = archive_entry_atime(e);
      m.times[0].tv_nsec = archive_entry_atime_nsec(e);
    } else {
      m.times[0] = m.times[1];
    }
  }
  return m;
}

void TreeWriter::set_owner_fd(int fd, archive_entry* e) const {
  if (!chown_) return;
  if (::fchown(fd, static_cast<uid_t>(archive_entry_uid(e)),
               static_cast<gid_t>(archive_entry_gid(e))) < 0)
    fail_errno("chown", errno);
}

void TreeWriter::set_xattrs_fd(int fd, archive_entry* e) {
  // POSIX ACLs carried as pax records (SCHILY.acl.*, as GNU tar --acls and
  // star write them; libarchive parses them into the entry). Those carried as
  // system.posix_acl_* xattrs (Docker's form) come with the xattrs below.
  for (int type : {ARCHIVE_ENTRY_ACL_TYPE_ACCESS, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT}) {
    std::string v = posix_acl_xattr(e, type);
    if (v.empty()) continue;
    const char* xname = type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS ? "system.posix_acl_access"
                                                              : "system.posix_acl_default";
    if (::fsetxattr(fd, xname, v.data(), v.size(), 0) < 0)
      fail_errno(
          std::string("set ") + (type == ARCHIVE_ENTRY_ACL_TYPE_ACCESS ? "" : "default ") + "ACL",
          errno);
    if (type == ARCHIVE_ENTRY_ACL_TYPE_DEFAULT) mode_unknown_ = true;
  }
  if (archive_entry_xattr_reset(e) == 0) return;
  const char* name;
  const void* value;
  size_t size;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (!name || !*name || std::strlen(name) > XATTR_NAME_MAX) fail("bad xattr name");
    if (size > opt_.limits.max_xattr || size > XATTR_SIZE_MAX)
      fail("xattr '" + shown(name) + "' larger than " + std::to_string(opt_.limits.max_xattr) +
           " bytes");
    if (stat_override_xattr(name))
      fail("xattr '" + shown(name) + "' would set owner and mode under xattr_permissions");
    if (opt_.rootless && (std::string_view(name).starts_with("trusted.") ||
                          std::string_view(name).starts_with("security.")))
      continue;  // needs privileges we do not have
    std::string real = format::escape_xattr_name(name);
    if (::fsetxattr(fd, real.c_str(), value, size, 0) < 0)
      fail_errno("set xattr '" + shown(real) + "'", errno);
    // New files below a directory with a default ACL get their modes from it.
    if (real == "system.posix_acl_default") mode_unknown_ = true;
  }
}

void TreeWriter::set_meta_at(int parent, const std::string& base, archive_entry* e,
                             bool is_link) const {
  if (chown_ && ::fchownat(parent, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                           static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) < 0)
    fail_errno("chown", errno);
  // The node was made by us a moment ago and is not a symlink, so fchmodat
  // (which follows symlinks) acts on it.
  if (!is_link && ::fchmodat(parent, base.c_str(), archive_entry_perm(e) & 07777, 0) < 0)
    fail_errno("chmod", errno);
  if (archive_entry_xattr_reset(e) > 0) {
    // No fd-based xattr call works on a symlink or device without opening
    // it; the /proc path goes through our verified parent fd.
    std::string p = sys::proc_path(parent, base);
    const char* name;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      if (!name || !*name || std::strlen(name) > XATTR_NAME_MAX) fail("bad xattr name");
      if (size > opt_.limits.max_xattr || size > XATTR_SIZE_MAX) fail("xattr too large");
      if (stat_override_xattr(name))
        fail("xattr '" + shown(name) + "' would set owner and mode under xattr_permissions");
      if (opt_.rootless && (std::string_view(name).starts_with("trusted.") ||
                            std::string_view(name).starts_with("security.")))
        continue;
      std::string real = format::escape_xattr_name(name);
      if (::lsetxattr(p.c_str(), real.c_str(), value, size, 0) < 0) {
        if (errno == EPERM && real.starts_with("user.")) continue;  // user.* on a link/device
        fail_errno("set xattr '" + shown(real) + "'", errno);
      }
    }
  }
  DirMeta m = dir_meta(e);
  if (m.has_times && ::utimensat(parent, base.c_str(), m.times, AT_SYMLINK_NOFOLLOW) < 0)
    fail_errno("set times", errno);
}

}  // namespace layer::unpack
