#include "mount_options.hpp"

#include <climits>
#include <cstdlib>

#include "util/error.hpp"

namespace layer::fuse {

using overlay::IdMap;
using overlay::XattrPermissions;

namespace {

// Splits at unescaped `sep`. For a mount option list (`options`) a backslash
// stays before what it escapes unless that is the separator, so that
// lowerdir's own split at ':' still sees escaped colons, and a separator
// inside double quotes does not split: SELinux labels come as
// context="...:s0:c1,c2", as the kernel parses them.
std::vector<std::string> split(const std::string& s, char sep, bool options) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      if (options && s[i + 1] != sep) cur += '\\';
      cur += s[++i];
    } else if (options && s[i] == '"') {
      quoted = !quoted;
      cur += s[i];
    } else if (s[i] == sep && !quoted) {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += s[i];
    }
  }
  out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> split_options(const std::string& s) {
  return split(s, ',', true);
}

std::string unescape(const std::string& s) {
  auto parts = split_escaped(s, '\0');
  return parts.front();
}

bool parse_bool(const std::string& name, const std::string& v) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw Error("option '" + name + "': expected 0 or 1, got '" + v + "'");
}

long parse_long(const std::string& name, const std::string& v, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi)
    throw Error("option '" + name + "': bad number '" + v + "'");
  return n;
}

// Generic mount options passed on to libfuse unchanged.
constexpr const char* kFuseFlags[] = {
    "allow_other",  "allow_root", "default_permissions",
    "suid",         "nosuid",     "dev",
    "nodev",        "exec",       "noexec",
    "sync",         "async",      "dirsync",
    "auto_unmount", "blkdev",     "rw",
};
constexpr const char* kFuseValued[] = {
    "fsname", "subtype", "max_read", "fscontext", "defcontext", "rootcontext",
};
// Options of mount(8) and fstab that mean nothing to a FUSE daemon (libfuse
// refuses them); fuse-overlayfs ignores them, and so does layerfs. So is
// "lazytime", which the kernel's FUSE mount does not take.
constexpr const char* kIgnoredFlags[] = {
    "defaults", "auto",  "noauto", "user",    "users",    "nouser",
    "owner",    "group", "nofail", "_netdev", "lazytime", "nolazytime",
};
// Kernel overlayfs options that podman or containers/storage may pass; they
// describe behaviour layerfs always has (or never needs), so they are accepted.
constexpr const char* kIgnoredValued[] = {
    "index", "xino", "nfs_export", "uuid", "fast_ino",
};

}  // namespace

std::vector<std::string> split_escaped(const std::string& s, char sep) {
  return split(s, sep, false);
}

void MountOptions::parse(const std::string& opts) {
  for (const auto& raw : split_options(opts)) {
    if (raw.empty()) continue;
    auto eq = raw.find('=');
    std::string name = raw.substr(0, eq);
    bool has_value = eq != std::string::npos;
    std::string value = has_value ? raw.substr(eq + 1) : std::string();
    auto need_value = [&] {
      if (!has_value || value.empty()) throw Error("option '" + name + "' needs a value");
    };
    auto no_value = [&] {
      if (has_value) throw Error("option '" + name + "' takes no value");
    };

    if (name == "lowerdir") {
      need_value();
      core.lowerdirs.clear();
      for (auto& d : split_escaped(value, ':')) {
        if (d.empty()) throw Error("option 'lowerdir': empty directory in '" + value + "'");
        core.lowerdirs.push_back(std::move(d));
      }
    } else if (name == "upperdir") {
      need_value();
      core.upperdir = unescape(value);
    } else if (name == "workdir") {
      need_value();
      core.workdir = unescape(value);
    } else if (name == "datadir") {
      need_value();
      core.datadir = unescape(value);
    } else if (name == "uidmapping") {
      need_value();
      core.uid_map = IdMap::parse(value, "option 'uidmapping'");
    } else if (name == "gidmapping") {
      need_value();
      core.gid_map = IdMap::parse(value, "option 'gidmapping'");
    } else if (name == "squash_to_root") {
      no_value();
      core.squash_to_root = true;
    } else if (name == "squash_to_uid") {
      need_value();
      core.squash_to_uid = parse_long(name, value, 0, UINT32_MAX - 1);
    } else if (name == "squash_to_gid") {
      need_value();
      core.squash_to_gid = parse_long(name, value, 0, UINT32_MAX - 1);
    } else if (name == "fsync") {
      need_value();
      core.fsync = parse_bool(name, value);
    } else if (name == "volatile") {
      no_value();
      core.fsync = false;
    } else if (name == "threaded") {
      need_value();
      threaded = parse_bool(name, value);
    } else if (name == "noacl") {
      no_value();
      acl = false;
    } else if (name == "metacopy") {
      if (value != "on" && value != "off")
        throw Error("option 'metacopy': '" + value + "' is not on or off");
      core.metacopy = value == "on";
    } else if (name == "redirect_dir") {
      need_value();
      if (value != "on" && value != "off" && value != "follow" && value != "nofollow")
        throw Error("option 'redirect_dir': '" + value + "' is not on, off, follow or nofollow");
      core.redirect_dir = value == "on";
    } else if (name == "static_nlink") {
      no_value();
      core.static_nlink = true;
    } else if (name == "xattr_permissions") {
      need_value();
      // fuse-overlayfs's: 1 and 2 keep owners and modes in the
      // security. / user.fuseoverlayfs.override_stat xattr (Overlay).
      long level = parse_long(name, value, 0, 2);
      core.xattr_permissions = level == 1   ? XattrPermissions::kSecurity
                               : level == 2 ? XattrPermissions::kUser
                                            : XattrPermissions::kOff;
    } else if (name == "lazy_fetch_all") {
      no_value();
      lazy = lazy_fetch_all = true;
    } else if (name == "lazy") {
      no_value();
      lazy = true;
    } else if (name == "lazy_rate") {
      need_value();
      lazy_rate = static_cast<uint64_t>(parse_long(name, value, 0, LONG_MAX));
    } else if (name == "userxattr") {
      no_value();
      core.userxattr = true;
    } else if (name == "timeout") {
      need_value();
      timeout = static_cast<double>(parse_long(name, value, 0, 100L * 365 * 86400));
    } else if (name == "writeback") {
      need_value();
      writeback = parse_bool(name, value);
    } else if (name == "passthrough") {
      need_value();
      passthrough = parse_bool(name, value);
    } else if (name == "uring") {
      need_value();
      uring = parse_bool(name, value);
    } else if (name == "noxattrs") {
      need_value();
      xattrs = !parse_bool(name, value);
    } else if (name == "plugins") {
      if (has_value && !value.empty()) throw Error("option 'plugins': plugins are not supported");
    } else if (name == "log") {
      need_value();
      log_file = unescape(value);
    } else if (name == "debug") {
      no_value();
      debug = true;
    } else if (name == "context") {
      // SELinux label podman passes on labelled hosts; fuse-overlayfs takes it
      // and does not hand it to the kernel (which refuses it without SELinux).
      need_value();
    } else if (name.rfind("x-", 0) == 0 || name == "comment") {
      // mount(8)'s userspace options (x-systemd.*, x-gvfs-*, comment=).
    } else if (name == "noatime" || name == "atime" || name == "strictatime" ||
               name == "nostrictatime" || name == "relatime" || name == "norelatime" ||
               name == "nodiratime" || name == "diratime") {
      // Flags as mount(8) reads them: each sets or clears its own bit, and
      // the kernel makes the rule of the bits (strictatime wins, then
      // noatime, else relatime, its default). libfuse 3.14 refuses most of
      // them; the daemon applies them itself (AtimeMount).
      no_value();
      if (name == "noatime" || name == "atime") core.noatime = name == "noatime";
      if (name == "strictatime" || name == "nostrictatime")
        core.strictatime = name == "strictatime";
      if (name == "nodiratime" || name == "diratime") core.nodiratime = name == "nodiratime";
    } else if (name == "ro") {
      no_value();
      core.read_only = true;
      fuse_options.push_back("ro");
    } else {
      bool known = false;
      for (const char* f : kFuseFlags) {
        if (name == f) {
          no_value();
          fuse_options.push_back(name);
          known = true;
        }
      }
      for (const char* f : kFuseValued) {
        if (name == f) {
          need_value();
          fuse_options.push_back(raw);
          known = true;
        }
      }
      for (const char* f : kIgnoredFlags) {
        if (name == f) {
          no_value();
          known = true;
        }
      }
      for (const char* f : kIgnoredValued) {
        if (name == f) {
          need_value();
          known = true;
        }
      }
      if (!known) throw Error("unknown option '" + name + "'");
    }
  }
}

void MountOptions::validate() const {
  if (core.lowerdirs.empty()) throw Error("option 'lowerdir' is required");
  if (!core.upperdir.empty() && core.workdir.empty())
    throw Error("option 'upperdir' needs option 'workdir' too");
  if (core.upperdir.empty() && !core.workdir.empty())
    throw Error("option 'workdir' needs option 'upperdir' too");
  if (core.squash_to_root && (core.squash_to_uid >= 0 || core.squash_to_gid >= 0))
    throw Error("option 'squash_to_root' conflicts with 'squash_to_uid'/'squash_to_gid'");
  if (lazy && core.datadir.empty()) throw Error("option 'lazy' needs option 'datadir'");
}

}  // namespace layer::fuse
