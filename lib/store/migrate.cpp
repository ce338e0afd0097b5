// Store: conversion of a format-1 store to format 2 (docs/store-format-2.md).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "store/layout.hpp"
#include "format/overlay_format.hpp"
#include "store/records.hpp"
#include "store/store.hpp"
#include "unpack/unpacker.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"

namespace layer::store {

namespace {

// Copies every xattr of `from` to `to` (both open fds of a directory or file).
void copy_xattrs(int from, int to, const std::string& what) {
  ssize_t n = ::flistxattr(from, nullptr, 0);
  if (n < 0) throw_errno("list xattrs of " + what);
  std::string names(static_cast<size_t>(n), '\0');
  n = ::flistxattr(from, names.data(), names.size());
  if (n < 0) throw_errno("list xattrs of " + what);
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    ssize_t v = ::fgetxattr(from, name.c_str(), nullptr, 0);
    if (v < 0) throw_errno("read xattr " + name + " of " + what);
    std::string value(static_cast<size_t>(v), '\0');
    v = ::fgetxattr(from, name.c_str(), value.data(), value.size());
    if (v < 0) throw_errno("read xattr " + name + " of " + what);
    if (::fsetxattr(to, name.c_str(), value.data(), static_cast<size_t>(v), 0) < 0)
      throw_errno("set xattr " + name + " on " + what);
  }
}

// Rebuilds one layer tree as format 2 beside the old one. Directories are
// made anew (same owner, mode, times, xattrs); regular files over
// unpack::kInlineMax become metadata-only entries naming their object
// (staged in `staging`, unless present in objects/); every other entry is
// hard-linked to the old tree's inode, so it keeps all its metadata and its
// link structure. Single-threaded.
class LayerConverter {
 public:
  LayerConverter(int objects, int staging, bool rootless)
      : objects_(objects), staging_(staging), markers_(format::names(rootless ? format::XattrNamespace::kUser : format::XattrNamespace::kTrusted)) {}

  void convert_dir(int from, int to, const std::string& rel) {
    for (const auto& name : sys::xlist_dir(from, ".")) {
      std::string path = rel.empty() ? name : rel + "/" + name;
      struct stat st;
      if (::fstatat(from, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) throw_errno("stat " + path);
      if (S_ISDIR(st.st_mode)) {
        if (::mkdirat(to, name.c_str(), 0700) < 0) throw_errno("mkdir " + path);
        UniqueFd a = sys::xopen_at(from, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, path);
        UniqueFd b = sys::xopen_at(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, path);
        convert_dir(a.get(), b.get(), path);
        copy_dir_meta(a.get(), b.get(), st, path);
      } else if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > unpack::kInlineMax) {
        convert_file(from, to, name, st, path);
      } else if (::linkat(from, name.c_str(), to, name.c_str(), 0) < 0) {
        throw_errno("link " + path);
      }
    }
  }

  // The root and every directory: owner, xattrs, then mode and times last.
  static void copy_dir_meta(int from, int to, const struct stat& st, const std::string& path) {
    if (::fchown(to, st.st_uid, st.st_gid) < 0 && ::geteuid() == 0) throw_errno("chown " + path);
    copy_xattrs(from, to, path);
    if (::fchmod(to, st.st_mode & 07777) < 0) throw_errno("chmod " + path);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::futimens(to, times) < 0) throw_errno("set times of " + path);
  }

  const std::set<Digest>& objects() const { return objects_used_; }
  uint64_t object_bytes() const { return object_bytes_; }

 private:
  void convert_file(int from, int to, const std::string& name, const struct stat& st,
                    const std::string& path) {
    // Links of one inode become links of one new entry.
    auto seen = by_inode_.find(st.st_ino);
    if (seen != by_inode_.end()) {
      if (::linkat(to_root_fd(seen->second.first), seen->second.second.c_str(), to, name.c_str(),
                   0) < 0)
        throw_errno("link " + path);
      return;
    }
    UniqueFd src = sys::xopen_at(from, name, O_RDONLY | O_NOFOLLOW, 0, path);
    Hasher h("sha256");
    std::vector<char> buf(256 << 10);
    for (;;) {
      auto n = sys::read_full(src.get(), buf.data(), buf.size());
      if (!n) throw Error("read " + path, n.error());
      h.update(buf.data(), *n);
      if (*n < buf.size()) break;
    }
    Digest d = h.finish();
    struct stat ost;
    std::string rel = Layout::object_redirect(d).substr(1);
    if (::fstatat(objects_, rel.c_str(), &ost, AT_SYMLINK_NOFOLLOW) < 0 &&
        ::fstatat(staging_, d.hex.c_str(), &ost, AT_SYMLINK_NOFOLLOW) < 0) {
      UniqueFd obj = sys::xopen_at(staging_, d.hex, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                                   0444, "object " + d.str());
      if (auto c = sys::copy_range(src.get(), obj.get(), 0, st.st_size); !c)
        throw Error("copy " + path + " to object " + d.str(), c.error());
      if (::fchmod(obj.get(), 0444) < 0) throw_errno("chmod object " + d.str());
    }
    objects_used_.insert(d);
    object_bytes_ += static_cast<uint64_t>(st.st_size);
    UniqueFd dst = sys::xopen_at(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600, path);
    if (::ftruncate(dst.get(), st.st_size) < 0) throw_errno("truncate " + path);
    if (::fchown(dst.get(), st.st_uid, st.st_gid) < 0 && ::geteuid() == 0)
      throw_errno("chown " + path);
    if (::fchmod(dst.get(), st.st_mode & 07777) < 0) throw_errno("chmod " + path);
    copy_xattrs(src.get(), dst.get(), path);
    std::string redirect = Layout::object_redirect(d);
    if (::fsetxattr(dst.get(), markers_.metacopy.data(), "", 0, 0) < 0 ||
        ::fsetxattr(dst.get(), markers_.redirect.data(), redirect.data(), redirect.size(), 0) < 0)
      throw_errno("mark " + path);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::futimens(dst.get(), times) < 0) throw_errno("set times of " + path);
    if (st.st_nlink > 1) {
      UniqueFd keep = sys::xopen_at(to, ".", O_PATH | O_DIRECTORY, 0, path);
      dir_fds_.push_back(std::move(keep));
      by_inode_[st.st_ino] = {dir_fds_.size() - 1, name};
    }
  }

  int to_root_fd(size_t i) const { return dir_fds_[i].get(); }

  int objects_;
  int staging_;
  const format::XattrNames& markers_;
  std::set<Digest> objects_used_;
  uint64_t object_bytes_ = 0;
  // Multiply-linked large files converted so far: inode -> (dir, name).
  std::map<ino_t, std::pair<size_t, std::string>> by_inode_;
  std::vector<UniqueFd> dir_fds_;
};

bool pid_alive(int pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

}  // namespace

uint64_t Store::migrate(const std::function<void(const Digest&)>& on_layer) {
  if (mode_ != LockMode::Exclusive)
    throw Error("store " + root_ + ": migrate needs the exclusive store lock");
  for (const auto& c : containers())
    if (pid_alive(c.pid))
      throw Error("store " + root_ + ": container " + c.id.substr(0, 12) +
                  " is mounted; unmount it before migrating");
  uint64_t converted = 0;
  for (const auto& l : layers()) {
    if (l.format >= 2) continue;
    if (on_layer) on_layer(l.diff_id);
    migrate_layer(l.diff_id);
    ++converted;
  }
  if (version_ < kStoreVersion) {
    Staging st = make_staging("store-json-");
    sys::xwrite_file_atomic(st.fd.get(), "store.json", root_fd_.get(), Layout::store_json(),
                            nlohmann::json{{"version", kStoreVersion}}.dump() + "\n");
    sys::xremove_tree(tmp_fd_.get(), st.name);
    version_ = kStoreVersion;
  }
  return converted;
}

// Crash-safe: the new tree is built and made durable in tmp/, then swapped
// with the old one by one RENAME_EXCHANGE; the old tree, then in tmp/, is
// removed (or swept at the next open). At every point layers/<hex> is a
// whole layer of format 1 or 2, and its objects are durable before it is.
void Store::migrate_layer(const Digest& diff_id) {
  auto info = layer_info(diff_id);
  if (!info) return;
  Staging st = make_staging("migrate-");
  try {
    std::string old_diff = Layout::layer_diff(diff_id);
    UniqueFd from = sys::xopen_at(root_fd_.get(), old_diff, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                  0, root_ + "/" + old_diff);
    if (::mkdirat(st.fd.get(), "diff", 0700) < 0 || ::mkdirat(st.fd.get(), "objects", 0700) < 0)
      throw_errno("mkdir staging for " + diff_id.str());
    UniqueFd to = sys::xopen_at(st.fd.get(), "diff", O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0,
                                "staging diff");
    UniqueFd staged = sys::xopen_at(st.fd.get(), "objects", O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                                    0, "staging objects");
    bool rootless = ::geteuid() != 0;
    LayerConverter conv(objects_fd_.get(), staged.get(), rootless);
    conv.convert_dir(from.get(), to.get(), "");
    struct stat rst;
    if (::fstat(from.get(), &rst) < 0) throw_errno("stat " + old_diff);
    LayerConverter::copy_dir_meta(from.get(), to.get(), rst, old_diff);
    if (sys::exists_at(root_fd_.get(), Layout::layer_files(diff_id)) &&
        ::linkat(root_fd_.get(), Layout::layer_files(diff_id).c_str(), st.fd.get(),
                 "files.json.zst", 0) < 0)
      throw_errno("link file list of " + diff_id.str());
    info->format = 2;
    info->object_bytes = conv.object_bytes();
    detail::write_object_list(st.fd.get(), conv.objects());
    std::string text = detail::layer_to_json(*info).dump(2) + "\n";
    UniqueFd lj = sys::xopen_at(st.fd.get(), "layer.json", O_WRONLY | O_CREAT | O_EXCL, 0644,
                                "staging layer.json");
    if (auto w = sys::write_all(lj.get(), text.data(), text.size()); !w)
      throw Error("write staging layer.json", w.error());
    lj.reset();
    if (::syncfs(st.fd.get()) < 0) throw_errno("syncfs " + root_);
    publish_objects(staged.get(), true);
    staged.reset();
    sys::xremove_tree(st.fd.get(), "objects");
    if (::renameat2(tmp_fd_.get(), st.name.c_str(), root_fd_.get(),
                    Layout::layer_dir(diff_id).c_str(), RENAME_EXCHANGE) < 0)
      throw_errno("swap in converted " + Layout::layer_dir(diff_id));
    sys::xfsync(root_fd_.get(), Layout::layers_dir(diff_id.algorithm));
  } catch (...) {
    try {
      sys::xremove_tree(tmp_fd_.get(), st.name);
    } catch (const Error&) {
      // The sweep removes it at the next open.
    }
    throw;
  }
  // tmp/<name> is now the old layer.
  sys::xremove_tree(tmp_fd_.get(), st.name);
}

}  // namespace layer::store
