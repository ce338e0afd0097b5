#include "unpack/tree_writer.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "format/overlay_format.hpp"
#include "unpack/tree_writer_util.hpp"
#include "util/digest.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::unpack {

using detail::shown;

namespace {

using format::kOpaqueMarker;
using format::kWhiteoutPrefix;

void split(const std::string& path, std::string& parent, std::string& base) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) {
    parent.clear();
    base = path;
  } else {
    parent = path.substr(0, slash);
    base = path.substr(slash + 1);
  }
}

// The process umask, read without changing it (umask(2) can only set it,
// which would race with other threads creating files). 0777 when unknown:
// then every mode is set explicitly. Read once per layer, not cached: the
// process may change its umask between layers.
mode_t current_umask() {
  auto fd = sys::open_at(AT_FDCWD, "/proc/self/status", O_RDONLY);
  if (!fd) return 0777;
  char buf[4096];
  auto n = sys::read_full(fd->get(), buf, sizeof buf);
  if (!n) return 0777;
  std::string_view text(buf, *n);
  auto at = text.find("\nUmask:\t");
  if (at == std::string_view::npos) return 0777;
  mode_t m = 0;
  size_t i = at + 8;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '7'; ++i)
    m = static_cast<mode_t>(m * 8 + static_cast<mode_t>(text[i] - '0'));
  if (i == at + 8 || i == text.size()) return 0777;  // no digits, or cut short
  return static_cast<mode_t>(m & 0777);
}

}  // namespace

bool normalize_entry_path(std::string_view raw, std::string& out, std::string& why) {
  out.clear();
  if (raw.empty()) {
    why = "empty name";
    return false;
  }
  if (raw[0] == '/') {
    why = "absolute path";
    return false;
  }
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string_view::npos) slash = raw.size();
    std::string_view comp = raw.substr(pos, slash - pos);
    pos = slash + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") {
      why = "'..' in path";
      return false;
    }
    if (!out.empty()) out += '/';
    out.append(comp);
  }
  return true;
}

TreeWriter::TreeWriter(int root, const Options& opt, std::string context)
    : root_(root),
      opt_(opt),
      context_(std::move(context)),
      chown_(!opt.rootless && ::geteuid() == 0),
      euid_(::geteuid()),
      egid_(::getegid()),
      umask_(current_umask()) {
  // A setgid root would pass its group (and the setgid bit) down to every
  // directory made below it; then no file's group can be predicted.
  struct stat st;
  if (::fstat(root_, &st) < 0 || (st.st_mode & S_ISGID))
    group_unknown_ = true;
  else if (st.st_gid != egid_)
    foreign_group_.insert("");
  // A default ACL on the root replaces the umask for everything below it.
  if (::fgetxattr(root_, "system.posix_acl_default", nullptr, 0) >= 0) mode_unknown_ = true;
}

void TreeWriter::fail(const std::string& msg) const {
  throw Error(context_ + ": entry '" + shown(entry_) + "': " + msg);
}

void TreeWriter::fail_errno(const std::string& what, int err) const {
  throw Error(context_ + ": entry '" + shown(entry_) + "': " + what, err);
}

TreeWriter::Dir TreeWriter::open_parent(const std::string& parent, bool create) {
  Dir d;
  if (parent.empty()) {
    d.fd = root_;
    return d;
  }
  auto r = sys::open_beneath(root_, parent.c_str(), O_PATH | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
  if (r) {
    d.owned = std::move(r).value();
    d.fd = d.owned.get();
    return d;
  }
  int err = r.error();
  if (err == ELOOP) fail("path '" + shown(parent) + "' goes through a symlink");
  if (err == ENOTDIR) fail("a component of '" + shown(parent) + "' is not a directory");
  if (err == EXDEV) fail("path '" + shown(parent) + "' leaves the layer");
  if (err != ENOENT || !create) fail_errno("open parent '" + shown(parent) + "'", err);
  // Create the missing directories one component at a time, never following
  // a symlink (O_PATH | O_NOFOLLOW on a symlink plus O_DIRECTORY is ENOTDIR).
  // Such a directory takes its group from wherever the file system says
  // (grpid mounts: its parent's), so new files' groups are no longer known.
  group_unknown_ = true;
  UniqueFd cur;
  int curfd = root_;
  size_t pos = 0;
  while (pos <= parent.size()) {
    size_t slash = parent.find('/', pos);
    if (slash == std::string::npos) slash = parent.size();
    std::string comp = parent.substr(pos, slash - pos);
    pos = slash + 1;
    if (::mkdirat(curfd, comp.c_str(), 0755) == 0)
      implicit_dirs_.emplace(parent.substr(0, slash), entry_);
    else if (errno != EEXIST)
      fail_errno("mkdir '" + shown(comp) + "'", errno);
    auto n = sys::open_at(curfd, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW);
    if (!n) {
      if (n.error() == ENOTDIR || n.error() == ELOOP)
        fail("path '" + shown(parent) + "' goes through a symlink or a non-directory");
      fail_errno("open '" + shown(comp) + "'", n.error());
    }
    cur = std::move(n).value();
    curfd = cur.get();
  }
  d.owned = std::move(cur);
  d.fd = d.owned.get();
  return d;
}

bool TreeWriter::make_room(int dir, const std::string& base, mode_t new_type) const {
  struct stat st;
  if (::fstatat(dir, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return false;
    fail_errno("stat", errno);
  }
  const bool new_is_dir = new_type == S_IFDIR;
  if (S_ISDIR(st.st_mode)) {
    if (new_is_dir) return true;
    try {
      sys::xremove_tree(dir, base);
    } catch (const Error& e) {
      fail(std::string("replacing a directory: ") + e.what());
    }
    return false;
  }
  // A naive extractor writes such an entry through the link, to wherever it
  // points: no image needs it, a hostile one would. Symlink over symlink is a
  // plain replacement.
  if (S_ISLNK(st.st_mode) && new_is_dir) fail("directory entry over a symlink");
  if (S_ISLNK(st.st_mode) && new_type != S_IFLNK)
    fail("entry over a symlink made earlier in the layer (it would be written through it)");
  if (::unlinkat(dir, base.c_str(), 0) < 0) fail_errno("replace existing entry", errno);
  return false;
}

void TreeWriter::apply(archive* a, archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  entry_ = raw ? raw : "";
  if (!raw) fail("entry without a usable name");
  if (entry_.size() > opt_.limits.max_name)
    fail("name longer than " + std::to_string(opt_.limits.max_name) + " bytes");
  std::string path, why;
  if (!normalize_entry_path(entry_, path, why)) fail(why);
  mode_t type = archive_entry_filetype(e);
  const char* hardlink = archive_entry_hardlink(e);

  if (path.empty()) {
    // The layer root ("./"): only a directory, whose metadata the root takes.
    if (hardlink || type != AE_IFDIR) fail("entry for the layer root is not a directory");
    set_owner_fd(root_, e);
    note_dir_group("", e);
    set_xattrs_fd(root_, e);
    dirs_[""] = dir_meta(e);
    return;
  }
  std::string parent, base;
  split(path, parent, base);
  for (size_t pos = 0; pos < parent.size();) {
    size_t slash = parent.find('/', pos);
    if (slash == std::string::npos) slash = parent.size();
    if (std::string_view(parent).substr(pos, slash - pos).starts_with(kWhiteoutPrefix))
      fail("whiteout name used as a directory");
    pos = slash + 1;
  }
  if (base.starts_with(kWhiteoutPrefix)) return apply_whiteout(parent, base);
  if (hardlink) return apply_hardlink(path, parent, base, hardlink);
  if (type == AE_IFREG)
    return lazy_ ? apply_lazy_file(e, path, parent, base) : apply_file(a, e, path, parent, base);

  Dir p = open_parent(parent, true);
  switch (type) {
    case AE_IFDIR:
      return apply_dir(e, path, p.fd, base);
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      if (!target || !*target) fail("symlink without a target");
      if (std::strlen(target) >= PATH_MAX) fail("symlink target too long");
      for (int attempt = 0;; ++attempt) {
        if (::symlinkat(target, p.fd, base.c_str()) == 0) break;
        if (errno != EEXIST || attempt > 0) fail_errno("symlink", errno);
        make_room(p.fd, base, S_IFLNK);
      }
      set_meta_at(p.fd, base, e, true);
      return;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO:
    case AE_IFSOCK:
      return apply_special(e, p.fd, base);
    default:
      fail("unsupported entry type 0" + std::to_string(type >> 12));
  }
}

void TreeWriter::apply_whiteout(const std::string& parent, const std::string& base) {
  // The parent must be a real directory of this layer (created if the tar
  // has no entry for it), reached without symlinks.
  Dir p = open_parent(parent, true);
  if (base == kOpaqueMarker) {
    opaque_.insert(parent);
    return;
  }
  std::string target = base.substr(kWhiteoutPrefix.size());
  if (target.empty() || target == "." || target == "..")
    fail("whiteout of '" + shown(target) + "' is not a valid name");
  if (target.starts_with(kWhiteoutPrefix)) fail("unknown whiteout marker");
  whiteouts_.insert(parent.empty() ? target : parent + "/" + target);
}

void TreeWriter::apply_hardlink(const std::string& path, const std::string& parent,
                                const std::string& base, const char* target) {
  std::string tpath, why;
  if (!normalize_entry_path(target, tpath, why)) fail("hardlink target: " + why);
  if (tpath.empty()) fail("hardlink to the layer root");
  if (tpath.find(kWhiteoutPrefix) != std::string::npos) {
    // Only whole components matter, but the whiteout prefix inside a component is
    // harmless to refuse: no real image links to such names.
    fail("hardlink to a whiteout name");
  }
  if (tpath == path) return;
  std::string tparent, tbase;
  split(tpath, tparent, tbase);
  Dir tp = open_parent(tparent, false);
  struct stat st;
  if (::fstatat(tp.fd, tbase.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) fail("hardlink target '" + shown(tpath) + "' does not exist");
    fail_errno("stat hardlink target", errno);
  }
  if (S_ISDIR(st.st_mode)) fail("hardlink to a directory");
  if (S_ISLNK(st.st_mode)) fail("hardlink to a symlink");
  Dir p = open_parent(parent, true);
  for (int attempt = 0;; ++attempt) {
    if (::linkat(tp.fd, tbase.c_str(), p.fd, base.c_str(), 0) == 0) break;
    if (errno != EEXIST || attempt > 0) fail_errno("hardlink", errno);
    make_room(p.fd, base, S_IFREG);
  }
  if (opt_.record_digests) {
    // Same inode, same content: the link's digest is its target's now.
    auto it = digests_.find(tpath);
    if (it != digests_.end())
      digests_[path] = it->second;
    else
      digests_.erase(path);
  }
}

void TreeWriter::apply_dir(archive_entry* e, const std::string& path, int parent,
                           const std::string& base) {
  for (int attempt = 0;; ++attempt) {
    if (::mkdirat(parent, base.c_str(), 0700) == 0) break;
    if (errno != EEXIST || attempt > 0) fail_errno("mkdir", errno);
    if (make_room(parent, base, S_IFDIR)) break;
  }
  // `base` in the verified parent is the directory just made or kept (not a
  // symlink: make_room refuses a directory entry over one), and nothing else
  // writes the staging tree, so the *at calls below act on it. An fd is
  // opened only when there are xattrs to set.
  if (chown_ && ::fchownat(parent, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                           static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) < 0)
    fail_errno("chown", errno);
  note_dir_group(path, e);
  implicit_dirs_.erase(path);  // the layer does have an entry for it
  if (archive_entry_xattr_count(e) > 0 ||
      archive_entry_acl_count(e, ARCHIVE_ENTRY_ACL_TYPE_POSIX1E) > 0) {
    auto fd = sys::open_at(parent, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!fd) fail_errno("open directory", fd.error());
    set_xattrs_fd(fd->get(), e);
  }
  dirs_[path] = dir_meta(e);
}

void TreeWriter::note_dir_group(const std::string& path, archive_entry* e) {
  if (chown_ && static_cast<gid_t>(archive_entry_gid(e)) != egid_)
    foreign_group_.insert(path);
  else if (chown_)
    foreign_group_.erase(path);
}

void TreeWriter::apply_special(archive_entry* e, int parent, const std::string& base) {
  mode_t type = archive_entry_filetype(e);
  dev_t rdev = 0;
  if (type == AE_IFCHR || type == AE_IFBLK) {
    uint64_t maj = archive_entry_rdevmajor(e), min = archive_entry_rdevminor(e);
    // mknod(2) takes the kernel's 32-bit encoding: 12 bits of major, 20 of
    // minor. Anything wider would be silently truncated to another device.
    if (maj > 0xfff || min > 0xfffff)
      fail("device number " + std::to_string(maj) + ":" + std::to_string(min) +
           " cannot be represented on Linux (major < 4096, minor < 1048576)");
    if (type == AE_IFCHR && maj == 0 && min == 0)
      fail("character device 0:0 (an overlay whiteout) under an ordinary name");
    // Without CAP_MKNOD a device node cannot be made; rootless layers skip them.
    if (opt_.rootless) return;
    rdev = makedev(static_cast<unsigned>(maj), static_cast<unsigned>(min));
  }
  mode_t kind = type == AE_IFCHR   ? S_IFCHR
                : type == AE_IFBLK ? S_IFBLK
                : type == AE_IFIFO ? S_IFIFO
                                   : S_IFSOCK;
  for (int attempt = 0;; ++attempt) {
    if (::mknodat(parent, base.c_str(), kind | 0600, rdev) == 0) break;
    if (errno != EEXIST || attempt > 0) fail_errno("mknod", errno);
    make_room(parent, base, kind);
  }
  set_meta_at(parent, base, e, false);
}

void TreeWriter::finish() {
  const char* opaque_name = (opt_.rootless ? format::kUser : format::kTrusted).opaque.data();
  // Directories holding xattr whiteouts are marked opaque "x": the
  // kernel's readdir (and ours) looks for those whiteouts only there.
  std::set<std::string> xwhiteout_dirs;
  entry_.clear();
  for (const auto& path : whiteouts_) {
    entry_ = path;
    std::string parent, base;
    split(path, parent, base);
    Dir p = open_parent(parent, true);
    struct stat st;
    if (::fstatat(p.fd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      // Entries of the same layer survive their whiteout. A directory that
      // replaces a whited-out one must still hide the lower contents.
      if (S_ISDIR(st.st_mode)) opaque_.insert(path);
      continue;
    }
    if (errno != ENOENT) fail_errno("stat whiteout target", errno);
    if (!opt_.rootless) {
      if (::mknodat(p.fd, base.c_str(), S_IFCHR | 0, makedev(0, 0)) < 0)
        fail_errno("create whiteout", errno);
    } else {
      auto fd = sys::open_at(p.fd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0);
      if (!fd) fail_errno("create whiteout", fd.error());
      if (::fsetxattr(fd->get(), format::kUser.whiteout.data(), "y", 1, 0) < 0)
        fail_errno("mark whiteout", errno);
      xwhiteout_dirs.insert(parent);
    }
  }
  for (const auto& path : opaque_) xwhiteout_dirs.erase(path);  // "y" says more
  auto mark = [&](const std::string& path, const char* value) {
    entry_ = path.empty() ? "." : path;
    UniqueFd owned;
    int fd = root_;
    if (!path.empty()) {
      auto r =
          sys::open_beneath(root_, path.c_str(), O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
      if (!r) fail_errno("open opaque directory", r.error());
      owned = std::move(r).value();
      fd = owned.get();
    }
    if (::fsetxattr(fd, opaque_name, value, 1, 0) < 0) fail_errno("mark opaque", errno);
  };
  for (const auto& path : opaque_) mark(path, "y");
  for (const auto& path : xwhiteout_dirs) mark(path, "x");
  // Children before parents, so that a parent's restrictive mode never
  // blocks reaching a child, and every directory's mtime is set after its
  // last change.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    const auto& [path, m] = *it;
    entry_ = path.empty() ? "." : path;
    UniqueFd owned;
    int fd = root_;
    if (!path.empty()) {
      auto r =
          sys::open_beneath(root_, path.c_str(), O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
      if (!r) {
        // Replaced by a later non-directory entry of the same name.
        if (r.error() == ENOTDIR || r.error() == ENOENT || r.error() == ELOOP) continue;
        fail_errno("open directory", r.error());
      }
      owned = std::move(r).value();
      fd = owned.get();
    }
    if (::fchmod(fd, m.mode) < 0) fail_errno("chmod", errno);
    if (m.has_times && ::futimens(fd, m.times) < 0) fail_errno("set times", errno);
  }
}

}  // namespace layer::unpack
