// ProcessUser: the uid, gid, supplementary gids and home directory a
// container's process runs with, resolved from an image config's `User`
// ("name", "uid", "name:group", "uid:gid") against the rootfs's own
// /etc/passwd and /etc/group. Plain value; resolve() is thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace layer::runtime {

struct ProcessUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;  // groups of /etc/group that list the user
  std::string home;                       // from /etc/passwd; empty when unknown

  // Resolves `user` beneath `rootfd` (the container's root directory): files
  // are opened with openat2 RESOLVE_BENEATH, so a symlink that leads out of
  // the rootfs is refused, never followed. A missing /etc/passwd or
  // /etc/group only matters when a name must be looked up. An empty `user`
  // is root. Throws Error naming the user or group at fault.
  static ProcessUser resolve(int rootfd, const std::string& user);

  // The same from the two files' contents (the testable core).
  static ProcessUser resolve(const std::string& user, const std::string& passwd,
                             const std::string& group);
};

}  // namespace layer::runtime
