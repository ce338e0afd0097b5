// Config: what the overlay core needs to know about a mount: its layers and
// the policies that change what it stores (ids, fsync, xattr namespaces).
// The daemon's own settings (FUSE, logging, io_uring) are not here: see
// fuse/mount_options.hpp. A plain value type; not shared between threads.
#pragma once

#include <string>
#include <vector>

#include "overlay/id_map.hpp"

namespace layer::store {
class MissingObjects;
}

namespace layer::overlay {

// When reading a file or directory updates its access time, as the kernel's
// mount options say (relatime is the kernel's default).
enum class Atime { kRelatime, kStrictatime, kNoatime };

// fuse-overlayfs's xattr_permissions=0|1|2: where owner and mode of regular
// files and directories live when the daemon cannot chown.
enum class XattrPermissions {
  kOff,       // in the real inode
  kSecurity,  // in security.fuseoverlayfs.override_stat
  kUser,      // in user.fuseoverlayfs.override_stat
};

struct Config {
  std::vector<std::string> lowerdirs;  // top first, as given
  std::string upperdir;                // empty: read-only mount
  std::string workdir;
  // A layerfs store's objects/ (store format 2, docs/store-format-2.md):
  // lower regular files with the store's metacopy and redirect markers
  // (lib/format) read their data from the object the redirect names
  // beneath it. Empty: such markers are not followed.
  std::string datadir;
  // With datadir: where objects named by lower entries but not yet in it
  // come from (lazily pulled layers); borrowed, must outlive the Overlay.
  // nullptr: a missing object is ENOENT.
  store::MissingObjects* missing_objects = nullptr;
  IdMap uid_map;
  IdMap gid_map;
  bool squash_to_root = false;
  long squash_to_uid = -1;
  long squash_to_gid = -1;
  bool fsync = true;
  bool static_nlink = false;
  // redirect_dir=on: renaming a directory with lower parts writes the kernel's
  // redirect xattr instead of copying its tree. Off by default, as in
  // Debian's kernel (CONFIG_OVERLAY_FS_REDIRECT_DIR=n) and in fuse-overlayfs:
  // tools that read an upper themselves (containers/storage's diff and
  // commit) do not follow redirects. `layerctl mount` turns it on; its commit
  // follows them.
  bool redirect_dir = false;
  // metacopy=on: a lower layer's metadata-only file (the kernel's metacopy,
  // without the store's object redirect: an upper the kernel wrote, used as
  // a lower) reads its data from the same name further down, as the
  // kernel's metacopy=on follows it. Off: such files are read as they are
  // (sparse), and cost no extra xattr read at lookup. An upper's metacopy
  // files are always followed, and metadata changes always make them.
  bool metacopy = false;
  XattrPermissions xattr_permissions = XattrPermissions::kOff;
  bool userxattr = false;  // the markers in the user namespace instead of trusted
  bool read_only = false;
  // The atime flags as mount(8) sets them (MS_NOATIME, MS_STRICTATIME,
  // MS_NODIRATIME; relatime is the kernel's default): atime_rule() is the
  // rule the kernel makes of them, for the upper layer (lower layers never
  // get atime updates, as with the kernel's overlayfs).
  bool noatime = false;
  bool strictatime = false;
  bool nodiratime = false;

  Atime atime_rule() const {
    return strictatime ? Atime::kStrictatime : noatime ? Atime::kNoatime : Atime::kRelatime;
  }
};

}  // namespace layer::overlay
