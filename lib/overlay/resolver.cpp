#include "overlay/resolver.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <cstring>

#include "format/overlay_format.hpp"
#include "store/layout.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"
#include "util/xattr_path.hpp"

namespace layer::overlay {

namespace {

bool stat_at(int dirfd, const char* name, struct stat* st) {
  return ::fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<UniqueFd> open_dir_at(int layer, int dirfd, const char* name) {
  auto r = open_in_layer(layer, dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (!r && r.error() == EACCES)
    return sys::open_at(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  return r;
}

}  // namespace

Result<UniqueFd> open_in_layer(int layer, int dirfd, const char* name, int flags) {
  if (layer != kUpper) {
    auto r = sys::open_at(dirfd, name, flags | O_NOATIME);
    if (r || r.error() != EPERM) return r;
  }
  return sys::open_at(dirfd, name, flags);
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= NAME_MAX && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos &&
         name != format::kOpaqueMarker;  // a mark in every layer, never a name
}

Resolver::Resolver(std::vector<UniqueFd> roots, std::string origin_xattr, std::string handle_xattr,
                   std::string impure_xattr, bool lower_metacopy)
    : roots_(std::move(roots)),
      origin_xattr_(std::move(origin_xattr)),
      handle_xattr_(std::move(handle_xattr)),
      impure_xattr_(std::move(impure_xattr)),
      lower_metacopy_(lower_metacopy) {
  for (const auto& r : roots_) {
    struct stat st;
    if (!r.valid() || ::fstat(r.get(), &st) != 0) continue;
    bool known = false;
    for (dev_t d : devs_) known = known || d == st.st_dev;
    if (!known) devs_.push_back(st.st_dev);
  }
}

std::shared_ptr<DirStack> Resolver::root_stack() const {
  auto stack = std::make_shared<DirStack>();
  for (size_t i = 0; i < roots_.size(); ++i) {
    if (!roots_[i].valid()) continue;
    auto fd = open_in_layer(static_cast<int>(i), roots_[i].get(), ".", O_RDONLY | O_DIRECTORY);
    if (!fd) throw Error("layer directory", fd.error());
    format::DirMarks m = format::read_dir_marks(fd.value().get());
    bool opaque = m.opaque;
    stack->push_back(LayerDir{static_cast<int>(i), std::move(fd).value(), m.xwhiteouts});
    if (opaque && i != 0) break;
  }
  return stack;
}

uint64_t Resolver::map_ino_raw(dev_t dev, ino_t ino) const {
  // Like the kernel's xino: the first filesystem's inode numbers are used as
  // they are, others get their filesystem's index in the top bits.
  for (size_t i = 0; i < devs_.size(); ++i)
    if (devs_[i] == dev) return i == 0 ? ino : (ino ^ (uint64_t{i} << 56));
  return ino ^ ((uint64_t{0x80} | (dev & 0x7f)) << 56);
}

uint64_t Resolver::map_ino(int layer, const struct stat& st, int dirfd, const char* name,
                           bool upper_origin) const {
  if (layer == kUpper && upper_origin) {
    // A copy-up keeps the inode number of its origin (the lower object), so
    // st_ino does not change when a file is copied up.
    XattrPath p(dirfd, name);
    uint64_t v = 0;
    if (p.get(origin_xattr_.c_str(), &v, sizeof(v)) == sizeof(v) && v != 0) return v;
    // The kernel's copy of a hard-linked lower file (index=on): its names
    // below show the lower's number, so it must too.
    if (S_ISREG(st.st_mode) && st.st_nlink > 1 && !handle_xattr_.empty()) {
      char h[256];
      ssize_t n = p.get(handle_xattr_.c_str(), h, sizeof(h));
      for (size_t i = 1; n > 0 && i < roots_.size(); ++i) {
        auto fd = format::open_origin(std::string_view(h, static_cast<size_t>(n)), roots_[i].get());
        struct stat ost;
        if (fd && ::fstat(fd.value().get(), &ost) == 0) return map_ino_raw(ost.st_dev, ost.st_ino);
      }
    }
  }
  return map_ino_raw(st.st_dev, st.st_ino);
}

bool Resolver::may_hold_origins(const DirStack& stack, int upper_fd) const {
  if (stack.size() > 1 || impure_xattr_.empty()) return true;
  char v;
  return XattrPath(upper_fd, nullptr).get(impure_xattr_.c_str(), &v, 1) >= 0 || errno != ENODATA;
}

Result<Found> Resolver::resolve(const DirStack& parent, std::string_view name_sv,
                                bool want_stack) const {
  char name[NAME_MAX + 1];
  std::memcpy(name, name_sv.data(), name_sv.size());
  name[name_sv.size()] = '\0';
  bool internal = name_sv.starts_with(format::kWhiteoutPrefix);

  Found f;
  size_t i = 0;
  for (; i < parent.size(); ++i) {
    const LayerDir& ld = parent[i];
    if (internal && ld.layer != kUpper) continue;  // OCI whiteout names: markers below the upper
    if (!stat_at(ld.fd.get(), name, &f.st)) {
      if (errno != ENOENT) return last_errno();
      if (ld.layer != kUpper && format::has_oci_whiteout(ld.fd.get(), name_sv))
        return Errno{ENOENT};
      continue;
    }
    if (format::is_whiteout(ld.fd.get(), name, f.st)) return Errno{ENOENT};
    f.layer = ld.layer;
    break;
  }
  if (i == parent.size()) return Errno{ENOENT};
  bool moved = false;
  if (metacopy_below(f.layer, parent[i].fd.get(), name, f.st, &moved)) {
    f.data_layer = -1;
    for (size_t j = i + 1; j < parent.size() && !moved; ++j) {
      struct stat st;
      if (!stat_at(parent[j].fd.get(), name, &st)) {
        if (errno != ENOENT) return last_errno();
        if (format::has_oci_whiteout(parent[j].fd.get(), name_sv)) break;
        continue;
      }
      if (!S_ISREG(st.st_mode) || format::is_whiteout(parent[j].fd.get(), name, st)) break;
      if (metacopy_below(parent[j].layer, parent[j].fd.get(), name, st, &moved)) continue;
      if (!moved) f.data_layer = parent[j].layer;
      break;
    }
  }
  if (!S_ISDIR(f.st.st_mode) || !want_stack) return f;

  auto stack = std::make_shared<DirStack>();
  auto top = open_dir_at(parent[i].layer, parent[i].fd.get(), name);
  if (!top) return Errno{top.error()};
  format::DirMarks marks = format::read_dir_marks(top.value().get());
  bool opaque = marks.opaque;
  f.opaque = opaque;
  std::string redirect = std::move(marks.redirect);
  stack->push_back(LayerDir{parent[i].layer, std::move(top).value(), marks.xwhiteouts});
  // Below, the same name in the parent's directories, unless the kernel's
  // redirect_dir moved this directory: "/a/b" is that path from each lower
  // layer's root, "x" the name x in the parent's directories.
  // An absolute redirect is followed even where the parent has no lower
  // directories (a directory moved into a new one), as the kernel does.
  std::string cur = name;
  for (size_t j = i + 1; !opaque; ++j) {
    if (!redirect.empty() && redirect[0] == '/') {
      // Absolute: every lower layer below, from its root.
      for (size_t l = static_cast<size_t>(stack->back().layer) + 1; l < roots_.size() && !opaque;
           ++l) {
        auto fd = sys::open_beneath(roots_[l].get(), redirect.c_str() + 1,
                                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NOATIME, 0,
                                    RESOLVE_NO_SYMLINKS);
        if (!fd && fd.error() == EPERM)
          fd = sys::open_beneath(roots_[l].get(), redirect.c_str() + 1,
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
        if (!fd) {
          if (fd.error() == ENOENT) continue;
          if (fd.error() == ENOTDIR) break;
          return Errno{fd.error()};
        }
        format::DirMarks m = format::read_dir_marks(fd.value().get());
        opaque = m.opaque;
        std::string next = std::move(m.redirect);
        stack->push_back(LayerDir{static_cast<int>(l), std::move(fd).value(), m.xwhiteouts});
        if (!next.empty() && next[0] == '/') redirect = next;
      }
      break;
    }
    if (j >= parent.size()) break;
    const LayerDir& ld = parent[j];
    if (!redirect.empty()) {
      cur = redirect;
      redirect.clear();
    }
    struct stat st;
    if (!stat_at(ld.fd.get(), cur.c_str(), &st)) {
      if (errno != ENOENT) return last_errno();
      if (format::has_oci_whiteout(ld.fd.get(), cur)) break;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) break;  // a whiteout or a non-directory ends the merge
    auto fd = open_dir_at(ld.layer, ld.fd.get(), cur.c_str());
    if (!fd) return Errno{fd.error()};
    format::DirMarks m = format::read_dir_marks(fd.value().get());
    opaque = m.opaque;
    redirect = std::move(m.redirect);
    stack->push_back(LayerDir{ld.layer, std::move(fd).value(), m.xwhiteouts});
  }
  f.stack = std::move(stack);
  return f;
}

bool Resolver::metacopy_below(int layer, int dirfd, const char* name, const struct stat& st,
                              bool* redirect) const {
  if ((layer != kUpper && !lower_metacopy_) || !format::may_be_metacopy(st) ||
      !format::is_metacopy(dirfd, name))
    return false;
  // A store entry's redirect names its object (store::data_of): its data.
  auto r = format::file_redirect(dirfd, name);
  if (r && layer != kUpper && store::Layout::parse_object_redirect(*r)) return false;
  *redirect = r.has_value();
  return true;
}

Result<bool> Resolver::lower_has(const DirStack& parent, std::string_view name_sv) const {
  char name[NAME_MAX + 1];
  std::memcpy(name, name_sv.data(), name_sv.size());
  name[name_sv.size()] = '\0';
  bool internal = name_sv.starts_with(format::kWhiteoutPrefix);
  for (const auto& ld : parent) {
    if (ld.layer == kUpper || internal) continue;
    struct stat st;
    if (!stat_at(ld.fd.get(), name, &st)) {
      if (errno != ENOENT) return last_errno();
      if (format::has_oci_whiteout(ld.fd.get(), name_sv)) return false;
      continue;
    }
    return !format::is_whiteout(ld.fd.get(), name, st);
  }
  return false;
}

}  // namespace layer::overlay
