// Reading a store-written metadata-only entry (docs/store-format-2.md): the
// object its markers name, and the object opened beneath the objects dir.
// Used by the daemon (hot path: no throwing) and by commit. Stateless;
// thread-safe.
#pragma once

#include <optional>

#include "util/digest.hpp"
#include "util/result.hpp"
#include "util/unique_fd.hpp"

namespace layer::store {

// The object the open regular file `fd` redirects to: the metacopy marker
// present and a redirect of exactly the shape Layout::object_redirect
// makes, in trusted.* or user.*. nullopt for anything else.
std::optional<Digest> object_named_by(int fd);

// Opens object d beneath `objects_dir` (the store's objects/), read-only,
// with no symlink anywhere on the way and never above the dir.
Result<UniqueFd> open_object(int objects_dir, const Digest& d);

// Supplies content objects that are not in objects/ yet (a lazily pulled
// layer's, docs/lazy-pull.md). fetch(d) returns once object d is published
// under objects/, or an errno (ENOENT: not one it knows; EIO: the fetch or
// its verification failed, to be tried again at the next call). Never
// throws. Thread-safe.
class MissingObjects {
 public:
  virtual ~MissingObjects() = default;
  virtual Result<void> fetch(const Digest& d) = 0;
};

// `fd` itself, or, when `objects_dir` >= 0 and fd is a metadata-only entry,
// its object; one that is missing is asked of `missing` (if given) first.
// Errors opening a named object are returned (never the sparse entry's
// zeros in its place).
Result<UniqueFd> data_of(UniqueFd fd, int objects_dir, MissingObjects* missing = nullptr);

}  // namespace layer::store
