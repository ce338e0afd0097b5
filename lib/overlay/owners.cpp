#include "overlay/owners.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "format/overlay_format.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

Owners::Owners(const Config& c) : c_(c) {
  if (c.xattr_permissions == XattrPermissions::kSecurity) perm_xattr_ = format::kPermXattrSecurity;
  if (c.xattr_permissions == XattrPermissions::kUser) perm_xattr_ = format::kPermXattrUser;
}

void Owners::to_inside(struct stat* st) const {
  if (c_.squash_to_root) {
    st->st_uid = 0;
    st->st_gid = 0;
  } else {
    st->st_uid = c_.squash_to_uid >= 0 ? static_cast<uid_t>(c_.squash_to_uid)
                                       : c_.uid_map.to_inside(st->st_uid);
    st->st_gid = c_.squash_to_gid >= 0 ? static_cast<gid_t>(c_.squash_to_gid)
                                       : c_.gid_map.to_inside(st->st_gid);
  }
}

void Owners::read_override(const XattrPath& p, struct stat* st) const {
  char buf[64];
  ssize_t len = p.get(perm_xattr_.c_str(), buf, sizeof(buf) - 1);
  if (len <= 0) return;
  buf[len] = '\0';
  unsigned uid, gid, mode;
  char end;
  if (std::sscanf(buf, "%u:%u:%o%c", &uid, &gid, &mode, &end) != 3) return;  // not ours: ignored
  st->st_uid = uid;
  st->st_gid = gid;
  st->st_mode = (st->st_mode & S_IFMT) | (mode & 07777);
}

Result<void> Owners::write_override(int dirfd, const char* name, uid_t uid, gid_t gid,
                                    mode_t mode) const {
  char buf[64];
  int len = std::snprintf(buf, sizeof(buf), "%u:%u:%o", static_cast<unsigned>(uid),
                          static_cast<unsigned>(gid), static_cast<unsigned>(mode & 07777));
  if (XattrPath(dirfd, name).set(perm_xattr_.c_str(), buf, static_cast<size_t>(len), 0) != 0)
    return last_errno();
  return {};
}

Result<void> Owners::set_owner(int dirfd, const char* name, const Caller& c, const struct stat& pst,
                               mode_t mode) const {
  uid_t uid = outside_uid(c.uid);
  gid_t gid = outside_gid(c.gid);
  if (pst.st_mode & S_ISGID) {
    gid = pst.st_gid;
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }
  if (in_xattr(mode)) return write_override(dirfd, name, uid, gid, mode);
  // Usually the daemon's own ids are the caller's (root in a container):
  // then the object already has them, and a chown would only cost a write.
  struct stat made;
  if (::fstatat(dirfd, name, &made, AT_SYMLINK_NOFOLLOW) == 0 && made.st_uid == uid &&
      made.st_gid == gid)
    return {};
  if (::fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
  // chown clears the set-id bits: put back what was asked for.
  if (!S_ISLNK(mode) && (mode & (S_ISUID | S_ISGID)) &&
      ::fchmodat(dirfd, name, mode & 07777, 0) != 0)
    return last_errno();
  return {};
}

}  // namespace layer::overlay
