// Helpers shared by DiffWriter's sources (diff_writer.cpp, diff_lowers.cpp):
// internal to lib/commit. Stateless; the throwing ones throw layer::Error.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "commit/diff_writer.hpp"
#include "format/overlay_format.hpp"
#include "util/error.hpp"
#include "util/sys.hpp"
#include "util/unique_fd.hpp"

namespace layer::commit::detail {

struct DirClose {
  void operator()(DIR* d) const { ::closedir(d); }
};

inline std::string join(const std::string& a, std::string_view b) {
  return a.empty() ? std::string(b) : a + "/" + std::string(b);
}

// One xattr's value, or nullopt when absent (or unreadable: an overlay
// marker we cannot read is one we cannot honour either).
// `follow`: the path is /proc/self/fd/N for a directory fd itself.
inline std::optional<std::string> get_xattr(const std::string& path, const std::string& attr,
                                            bool follow = false) {
  char buf[4096];
  ssize_t n = follow ? ::getxattr(path.c_str(), attr.c_str(), buf, sizeof buf)
                     : ::lgetxattr(path.c_str(), attr.c_str(), buf, sizeof buf);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

// An overlay marker (`key` of either namespace); trusted.* wins.
using Key = std::string_view format::XattrNames::*;
inline std::optional<std::string> overlay_xattr(int dirfd, const std::string& name, Key key) {
  std::string p = sys::proc_path(dirfd, name);
  for (const format::XattrNames* ns : format::kNamespaces)
    if (auto v = get_xattr(p, std::string(ns->*key), name.empty())) return v;
  return std::nullopt;
}

// A directory's entry names, sorted, without "." and "..".
inline std::vector<std::string> sorted_names(int dirfd, const std::string& what) {
  UniqueFd fd(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
  if (!fd) throw Error(what, errno);
  // A dup shares the offset: start from the top whoever read it before.
  if (::lseek(fd.get(), 0, SEEK_SET) < 0) throw Error(what, errno);
  std::unique_ptr<DIR, DirClose> d(::fdopendir(fd.get()));
  if (!d) throw Error(what, errno);
  fd.release();
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d.get())) {
    std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
    errno = 0;
  }
  if (errno) throw Error(what, errno);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace layer::commit::detail

namespace layer::commit {

// A directory DiffWriter reads: a lower layer's (owned), or the upper's.
struct DiffWriter::Source {
  UniqueFd owned;
  int fd = -1;
  bool upper = false;
};

}  // namespace layer::commit
