// UpperDir: the upper directory and our scratch directory workdir/work, and
// the overlay format's writes there: whiteouts, opaque and impure marks,
// moves that leave a whiteout, temporary names in work/. Both fds are
// invalid for a read-only mount. Constant after construction except the
// temporary-name counter (atomic): thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "format/overlay_format.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

// A 16-digit hex name for an inode number (index and partial entries).
std::string ino_name(uint64_t ino);

class UpperDir {
 public:
  UpperDir(UniqueFd upper, UniqueFd work, format::XattrNamespace ns)
      : upper_(std::move(upper)), work_(std::move(work)), ns_(ns) {}

  bool valid() const { return upper_.valid(); }
  int upper() const { return upper_.get(); }
  int work() const { return work_.get(); }
  format::XattrNamespace ns() const { return ns_; }
  // The markers' names in the namespace this upper uses.
  const format::XattrNames& xattrs() const { return format::names(ns_); }

  // Whether a program through the mount must not see or set xattr `name`:
  // all of our namespace (an image's own such names are stored escaped), and
  // the format's names in the other one, which are read too.
  bool hides(std::string_view name) const {
    return name.starts_with(xattrs().prefix) || format::is_private_xattr(name);
  }
  // Whether `name` is an image's own xattr stored escaped in our namespace.
  bool escaped(std::string_view name) const { return format::is_escaped_xattr(name, ns_); }

  // A fresh name for something made in work/ before it is renamed into place.
  std::string temp_name();
  // The kernel's whiteout at (dirfd, name): a character device 0:0, or
  // without CAP_MKNOD a zero-size file with the whiteout xattr.
  Result<void> make_whiteout(int dirfd, const char* name);
  // Renames (fromdir, from) to (todir, to), leaving a whiteout at the old name
  // if `whiteout` (RENAME_WHITEOUT, or a rename and make_whiteout without it).
  Result<void> move_name(int fromdir, const char* from, int todir, const char* to, bool whiteout);
  // Whether (dirfd, name) is a whiteout: false if absent, EEXIST if it is a
  // real object.
  Result<bool> is_whiteout(int dirfd, const char* name);
  Result<void> set_opaque(int dirfd);
  // The kernel's "holds copied-up entries" mark on a directory.
  void mark_impure(int dirfd);
  // Removes work/name recursively, never following symlinks.
  Result<void> remove_in_work(const char* name);
  // Removes every whiteout directly in dirfd.
  Result<void> remove_whiteouts(int dirfd);

 private:
  const UniqueFd upper_;
  const UniqueFd work_;
  const format::XattrNamespace ns_;
  std::atomic<uint64_t> temp_counter_{0};
};

}  // namespace layer::overlay
