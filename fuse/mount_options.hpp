// MountOptions: the layerfs command line (`-o lowerdir=A:B,upperdir=U,workdir=W,...`),
// parsed the way fuse-overlayfs reads it: the overlay core's Config plus the
// daemon's own settings (FUSE, io_uring, logging). Cold path: parse() throws
// layer::Error naming the offending option. A plain value type; not shared
// between threads.
#pragma once

#include <string>
#include <vector>

#include "overlay/config.hpp"

namespace layer::fuse {

struct MountOptions {
  overlay::Config core;  // what lib/overlay needs
  bool threaded = true;
  bool acl = true;
  bool xattrs = true;      // noxattrs=1: none through the mount (ENOTSUP), ACLs included
  double timeout = 86400;  // entry/attr timeout, seconds
  // Off by default: the kernel does not flush its cache before SEEK_DATA/
  // SEEK_HOLE, and FUSE passthrough excludes it.
  bool writeback = false;
  // FUSE passthrough of open files where the kernel and privileges allow it.
  bool passthrough = true;
  // FUSE over io_uring where the kernel allows it: the fuse module's
  // enable_uring parameter (off by default in the kernel, so an
  // administrator's choice) makes the kernel offer it at INIT; otherwise,
  // or with -o uring=0, /dev/fuse. bench/overlay.py's layerfs-uring column
  // against layerfs: metadata operations 1.3-2.8x faster, the rest equal.
  bool uring = true;
  bool debug = false;    // -o debug: log every request (as -d, without -f)
  // -o lazy (with datadir): lower layers pulled lazily (their layer directory
  // holds lazy.json) get their missing content objects fetched on open.
  bool lazy = false;
  // -o lazy_fetch_all: and complete the lazy layers in the background
  // (LazyObjects::complete_all: access lists, landmarks, then each whole
  // blob, verified; on-demand fetches pre-empt it).
  bool lazy_fetch_all = false;
  // -o lazy_rate=BYTES: the background completion's bytes a second (0: no
  // limit).
  uint64_t lazy_rate = kDefaultLazyRate;
  static constexpr uint64_t kDefaultLazyRate = 64 << 20;
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

}  // namespace layer::fuse
