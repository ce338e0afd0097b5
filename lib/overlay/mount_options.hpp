// MountOptions: the layerfs command line (`-o lowerdir=A:B,upperdir=U,workdir=W,...`),
// parsed the way fuse-overlayfs reads it. Cold path: parse() throws layer::Error
// naming the offending option. A plain value type; not shared between threads.
#pragma once

#include <string>
#include <vector>

#include "overlay/id_map.hpp"

namespace layer::overlay {

struct MountOptions {
  std::vector<std::string> lowerdirs;  // top first, as given
  std::string upperdir;                // empty: read-only mount
  std::string workdir;
  // A layerfs store's objects/ (store format 2, docs/store-format-2.md):
  // lower regular files with the store's metacopy and redirect markers
  // (lib/format) read their data from the object the redirect
  // names beneath it. Empty: such markers are not followed.
  std::string datadir;
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
};

// Splits s at unescaped `sep`, removing the escaping backslashes.
std::vector<std::string> split_escaped(const std::string& s, char sep);

}  // namespace layer::overlay
