// Resolver: finds a name in a merged directory, layer by layer, honouring
// whiteouts, opaque directories and the kernel's redirects, and gives every
// object its inode number in the mount. Holds the layers' root directory
// fds. Everything is constant after construction, so it is thread-safe
// without a lock; it never writes to any layer.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "overlay/node.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

// A name a program may use for one directory entry: not empty, ".", "..",
// too long, holding '/' or NUL, or the OCI opaque marker.
bool valid_name(std::string_view name);

// openat(2) of something in `layer`. Lower layers are opened O_NOATIME, as
// the kernel's overlayfs opens them: reading through the mount never writes
// to a lower layer (the store). O_NOATIME needs the owner or CAP_FOWNER;
// without them, the plain open.
Result<UniqueFd> open_in_layer(int layer, int dirfd, const char* name, int flags);

// The result of resolving one name in a merged directory.
struct Found {
  int layer = -1;
  struct stat st {};
  std::shared_ptr<const DirStack> stack;  // directories, when asked for
  bool opaque = false;
  // An upper regular file that is a metadata-only copy: the lower layer
  // holding its data under the same name, or -1 if none does (Node::data_layer).
  int data_layer = 0;
};

class Resolver {
 public:
  // roots[0] is the upper directory (invalid: read-only), roots[1..] the
  // lowers, top first. `origin_xattr`: where a copy-up keeps its original
  // inode number; `handle_xattr`: where the kernel's overlayfs keeps its
  // origin's file handle (format::origin_handle), for its own copy-ups;
  // `impure_xattr`: the mark of an upper directory that holds such copies
  // (or held them); empty: every upper directory may hold them.
  // `lower_metacopy`: follow metacopy files in lower layers too (Config::metacopy).
  Resolver(std::vector<UniqueFd> roots, std::string origin_xattr, std::string handle_xattr = {},
           std::string impure_xattr = {}, bool lower_metacopy = false);
  // Whether a lower file may be a metadata-only one whose data is below it.
  bool follows_lower_metacopy() const { return lower_metacopy_; }
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The merged root: every layer's top directory down to the first opaque
  // one. Throws layer::Error (cold path).
  std::shared_ptr<DirStack> root_stack() const;
  int upper_root() const { return roots_[0].get(); }
  int lower_root(size_t i) const { return roots_.at(i).get(); }  // 1-based

  // Resolving a name in a merged directory, layer by layer from the top:
  //   ENOENT in a layer  -> try the next layer (unless its OCI whiteout is there)
  //   a whiteout         -> stop: ENOENT
  //   found              -> stop: that layer's object; a directory goes on
  //                         collecting the same name below it (`want_stack`)
  //                         until an opaque directory, a whiteout or a
  //                         non-directory
  //   any other errno    -> stop and return it
  // A metadata-only file (the metacopy marker in the upper; in a lower layer
  // with metacopy=on) goes on to the same name below for its data: the first
  // regular file that is not itself metadata-only, unless a whiteout or
  // another type comes first, as the kernel's path-based lookup does. One
  // with a redirect of its own (a kernel rename) is not followed: EIO.
  Result<Found> resolve(const DirStack& parent, std::string_view name, bool want_stack) const;
  // Whether a lower layer of `parent` has `name` (whiteouts respected).
  Result<bool> lower_has(const DirStack& parent, std::string_view name) const;

  // The inode number in the mount of (dirfd, name) in `layer` with stat st;
  // an upper copy-up keeps its origin's number if `upper_origin` (a
  // multiply linked copy-up made by the kernel's overlayfs too, as the
  // kernel shows it, when its origin handle can be opened).
  uint64_t map_ino(int layer, const struct stat& st, int dirfd, const char* name,
                   bool upper_origin) const;
  uint64_t map_ino_raw(dev_t dev, ino_t ino) const;
  // Whether entries of the upper directory `upper_fd` of `stack` may keep
  // an origin's inode number: the directory has lower layers (a copy-up
  // lands there), or carries the impure mark (a copy was renamed or linked
  // into it: UpperDir::mark_impure, as the kernel marks them). Otherwise
  // every entry's number is its own, as for the kernel's pure upper dirs.
  bool may_hold_origins(const DirStack& stack, int upper_fd) const;

 private:
  const std::vector<UniqueFd> roots_;
  std::vector<dev_t> devs_;  // distinct st_dev of the layers; index = ino tag. Constant.
  const std::string origin_xattr_;
  const std::string handle_xattr_;
  const std::string impure_xattr_;
  const bool lower_metacopy_;
  // Whether (dirfd, name) with stat st is a metadata-only file in `layer`
  // whose data is further down (not a store entry's object redirect);
  // *redirect: it has a redirect of its own (renamed by the kernel).
  bool metacopy_below(int layer, int dirfd, const char* name, const struct stat& st,
                      bool* redirect) const;
};

}  // namespace layer::overlay
