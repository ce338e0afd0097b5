// AtimeMount: a private, detached copy of the mount that holds a directory,
// with the atime rule a layerfs mount asked for (open_tree(OPEN_TREE_CLONE)
// and mount_setattr). Layers opened through it get that rule for every read
// the daemon makes and for every read the kernel makes of a passthrough
// backing file (the kernel applies the rule of the backing file's own
// mount), whatever the rule of the mount they live on. Without the privilege
// to clone mounts (rootless), open_dir() opens the path itself and the
// filesystem's own rule applies. Owns the clone's fd (the clone goes away
// with the last fd opened through it). Immutable after clone(); thread-safe.
#pragma once

#include <string>

#include "overlay/config.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::overlay {

class AtimeMount {
 public:
  // Clones the mount at the directory `dir` (an absolute or relative path)
  // with `atime` (and no directory atime updates if `nodiratime`). Cold path:
  // a failure leaves an AtimeMount that opens paths plainly.
  static AtimeMount clone(const std::string& dir, Atime atime, bool nodiratime);

  // Opens the directory `path`, which lies at or below the cloned `dir`,
  // through the clone when it reaches the same directory there; else
  // plainly (O_RDONLY | O_DIRECTORY).
  Result<UniqueFd> open_dir(const std::string& path) const;
  // The same through the clone only: EXDEV where the clone does not reach
  // `path` (no clone, not below `dir`, another mount on the way).
  Result<UniqueFd> open_below(const std::string& path) const;
  bool cloned() const { return root_.valid(); }

 private:
  UniqueFd root_;     // the clone's root, or invalid
  std::string base_;  // the cloned directory, as realpath(3) gives it
};

// The deepest directory holding both `a` and `b` (paths resolved with
// realpath(3)); empty if either does not resolve.
std::string common_ancestor(const std::string& a, const std::string& b);

}  // namespace layer::overlay
