// DiffWriter: what the lower layers hold below an upper directory (their
// directories, files, lazy copy-up sources and hard links).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>

#include "commit/diff_util.hpp"
#include "commit/diff_writer.hpp"
#include "store/object_ref.hpp"

namespace layer::commit {

using detail::join;
using detail::overlay_xattr;
using detail::sorted_names;

// The lower layers' directories at `lower_rel`, top first, down to the first
// opaque one or the first layer where the path is not a directory.
std::vector<DiffWriter::Source> DiffWriter::lower_dirs(const std::string& lower_rel) {
  std::vector<Source> out;
  const char* p = lower_rel.empty() ? "." : lower_rel.c_str();
  for (const auto& l : lowers_) {
    auto fd = sys::open_beneath(l.fd, p, O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_SYMLINKS);
    if (!fd) {
      if (fd.error() == ENOENT) continue;
      if (fd.error() == ENOTDIR || fd.error() == ELOOP) break;
      fail(lower_rel, "open in " + l.path, fd.error());
    }
    bool stop = format::is_opaque(fd->get());
    out.push_back(Source{std::move(fd).value(), -1, false});
    out.back().fd = out.back().owned.get();
    if (stop) break;
  }
  return out;
}

// The topmost lower regular file at `lower_rel`; -1 if none. Owned by caller.
int DiffWriter::open_lower_file(const std::string& lower_rel, struct stat* st) {
  for (const auto& l : lowers_) {
    auto fd =
        sys::open_beneath(l.fd, lower_rel.c_str(), O_RDONLY | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
    if (!fd) {
      if (fd.error() == ENOENT) continue;
      return -1;
    }
    if (::fstat(fd->get(), st) != 0 || !S_ISREG(st->st_mode)) return -1;
    auto data = store::data_of(std::move(fd).value(), opt_.objects_dir);
    return data ? std::move(data).value().release() : -1;
  }
  return -1;
}

// lib/overlay's partial copy-up marker: "<limit>\0<lowerdir>\0<path>". The
// lowerdir must be one of ours (compared by inode, not by spelling).
int DiffWriter::partial_lower(const std::string& marker, off_t* limit) {
  size_t a = marker.find('\0');
  size_t b = a == std::string::npos ? a : marker.find('\0', a + 1);
  if (b == std::string::npos) return -1;
  *limit = std::strtoll(marker.substr(0, a).c_str(), nullptr, 10);
  std::string dir = marker.substr(a + 1, b - a - 1), path = marker.substr(b + 1);
  struct stat want;
  if (::stat(dir.c_str(), &want) != 0) return -1;
  for (const auto& l : lowers_) {
    struct stat have;
    if (::fstat(l.fd, &have) != 0 || have.st_dev != want.st_dev || have.st_ino != want.st_ino)
      continue;
    auto fd = sys::open_beneath(l.fd, path.c_str(), O_RDONLY | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
    if (!fd) return -1;
    auto data = store::data_of(std::move(fd).value(), opt_.objects_dir);
    return data ? std::move(data).value().release() : -1;
  }
  return -1;
}

// The whole-layer map from inode to the names of its multi-link files.
const std::multimap<ino_t, std::string>& DiffWriter::lower_inodes(size_t layer) {
  auto it = lower_inodes_.find(layer);
  if (it != lower_inodes_.end()) return it->second;
  auto& m = lower_inodes_[layer];
  std::function<void(int, const std::string&)> walk = [&](int dirfd, const std::string& rel) {
    for (const auto& n : sorted_names(dirfd, what_ + ": lower '" + rel + "'")) {
      struct stat st;
      if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      std::string child = join(rel, n);
      if (S_ISREG(st.st_mode) && st.st_nlink > 1) m.emplace(st.st_ino, child);
      if (!S_ISDIR(st.st_mode)) continue;
      auto fd = sys::open_at(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      if (fd) walk(fd->get(), child);
    }
  };
  walk(lowers_[layer].fd, "");
  return m;
}

// True unless `path` is still a lower name in the merged view: its parent
// is an upper directory (so written to the layer) that is not opaque, under
// no opaque upper directory, and the upper has nothing at `path`.
bool DiffWriter::hidden_in_upper(const std::string& path) {
  int cur = top_;
  UniqueFd owned;
  size_t pos = 0;
  for (;;) {
    size_t slash = path.find('/', pos);
    std::string comp =
        path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    if (slash == std::string::npos) {
      struct stat st;
      return ::fstatat(cur, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT;
    }
    auto fd = sys::open_at(cur, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!fd || format::is_opaque(fd->get()) ||
        overlay_xattr(fd->get(), "", &format::XattrNames::redirect))
      return true;
    owned = std::move(fd).value();
    cur = owned.get();
    pos = slash + 1;
  }
}

// `rel`, written from the upper, is lib/overlay's copy of a lower file. If
// that lower file has other names the mount shows (and has not linked into
// the upper yet), they are the same file: the layer gets them as links.
void DiffWriter::note_lower_links(const std::string& rel) {
  for (size_t i = 0; i < lowers_.size(); ++i) {
    struct stat st;
    auto fd =
        sys::open_beneath(lowers_[i].fd, rel.c_str(), O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
    if (!fd) {
      if (fd.error() == ENOENT) continue;
      return;
    }
    if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink < 2) return;
    auto range = lower_inodes(i).equal_range(st.st_ino);
    for (auto it = range.first; it != range.second; ++it) {
      const std::string& other = it->second;
      if (other == rel || hidden_in_upper(other)) continue;
      bool shadowed = false;  // a layer above the file's has the name
      for (size_t j = 0; j < i && !shadowed; ++j) {
        struct stat s2;
        shadowed = ::fstatat(lowers_[j].fd, other.c_str(), &s2, AT_SYMLINK_NOFOLLOW) == 0;
      }
      if (!shadowed) lower_links_.emplace_back(other, rel);
    }
    return;
  }
}

}  // namespace layer::commit
