// Owners: how owners and modes map between the mount and the layers: the
// uid/gid maps, the squash options, and fuse-overlayfs's xattr_permissions
// (owner and mode of regular files and directories kept in an xattr,
// "UID:GID:MODE" with host ids and an octal mode, for daemons that cannot
// chown). Constant after construction; thread-safe.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "overlay/config.hpp"
#include "util/result.hpp"

namespace layer {
class XattrPath;
}

namespace layer::overlay {

// Who asks: the ids are as seen inside the mount (before id mapping).
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 0;
};

class Owners {
 public:
  explicit Owners(const Config& c);

  uid_t outside_uid(uid_t inside) const { return c_.uid_map.to_outside(inside); }
  gid_t outside_gid(gid_t inside) const { return c_.gid_map.to_outside(inside); }
  // st's owner as the mount shows it (squash, maps).
  void to_inside(struct stat* st) const;

  // Whether owner and mode of a `type` object live in the xattr.
  bool in_xattr(mode_t type) const {
    return !perm_xattr_.empty() && (S_ISREG(type) || S_ISDIR(type));
  }
  // Overrides st's owner and mode from the xattr of p, if it has one.
  void read_override(const XattrPath& p, struct stat* st) const;
  Result<void> write_override(int dirfd, const char* name, uid_t uid, gid_t gid, mode_t mode) const;
  // Gives the new object (dirfd, name) of type and mode `mode` its owner:
  // the caller's, or the group of a set-group-ID parent `pst`.
  Result<void> set_owner(int dirfd, const char* name, const Caller& c, const struct stat& pst,
                         mode_t mode) const;

 private:
  const Config& c_;
  std::string perm_xattr_;  // "" = off. Constant.
};

}  // namespace layer::overlay
