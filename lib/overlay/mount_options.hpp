// MountOptions: the layerfs command line (`-o lowerdir=A:B,upperdir=U,workdir=W,...`),
// parsed the way fuse-overlayfs reads it. Cold path: parse() throws layer::Error
// naming the offending option. A plain value type; not shared between threads.
#pragma once

#include <string>
#include <vector>

#include "overlay/id_map.hpp"

namespace layer::overlay {

// When reading a file or directory updates its access time, as the kernel's
// mount options say (relatime is the kernel's default).
enum class Atime { kRelatime, kStrictatime, kNoatime };

struct MountOptions {
  std::vector<std::string> lowerdirs;  // top first, as given
  std::string upperdir;                // empty: read-only mount
  std::string workdir;
  IdMap uid_map;
  IdMap gid_map;
  bool squash_to_root = false;
  long squash_to_uid = -1;
  long squash_to_gid = -1;
  bool fsync = true;
  bool threaded = true;
  bool acl = true;
  bool static_nlink = false;
  int xattr_permissions = 0;
  bool userxattr = false;  // private xattrs under user.overlay. instead of trusted.overlay.
  double timeout = 86400;  // entry/attr timeout, seconds
  // Off by default: the kernel does not flush its cache before SEEK_DATA/
  // SEEK_HOLE, and FUSE passthrough excludes it.
  bool writeback = false;
  // FUSE passthrough of open files where the kernel and privileges allow it.
  bool passthrough = true;
  // FUSE over io_uring where the kernel allows it (the fuse module's
  // enable_uring parameter, off by default in the kernel). Opt-in: the
  // kernel's side is new (6.14).
  bool uring = false;
  bool read_only = false;
  // The atime flags as mount(8) sets them (MS_NOATIME, MS_STRICTATIME,
  // MS_NODIRATIME; relatime is the kernel's default): atime_rule() is the
  // rule the kernel makes of them, for the upper layer (lower layers never
  // get atime updates, as with the kernel's overlayfs).
  bool noatime = false;
  bool strictatime = false;
  bool nodiratime = false;
  bool debug = false;    // -o debug: log every request (as -d, without -f)
  std::string log_file;  // empty: syslog (background) or stderr (foreground)
  // Generic mount options handed to libfuse (allow_other, nosuid, ...).
  std::vector<std::string> fuse_options;

  // Parses one or more comma-separated option strings (each the argument of a
  // -o). Backslash escapes a comma, colon or backslash inside a value.
  // Throws Error("option 'NAME': ...") for unknown or malformed options.
  void parse(const std::string& opts);

  // Checks the combination (lowerdir given, workdir with upperdir...).
  void validate() const;

  Atime atime_rule() const {
    return strictatime ? Atime::kStrictatime : noatime ? Atime::kNoatime : Atime::kRelatime;
  }
};

// Splits s at unescaped `sep`, removing the escaping backslashes.
std::vector<std::string> split_escaped(const std::string& s, char sep);

}  // namespace layer::overlay
